"""`\\d+` in psql explains the log to a DBA: every table, column, view, type and function
of the audit schema carries a COMMENT."""

from __future__ import annotations


def test_every_table_and_column_has_a_comment(conn):
    missing = conn.execute(
        """
        select c.relname || coalesce('.' || a.attname, '')
        from pg_class c
        left join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
        where c.relnamespace = 'audit'::regnamespace and c.relkind in ('r', 'p', 'v')
          and c.relname <> 'alembic_version'
          -- a partition's columns are its parent's (each has its table comment)
          and (obj_description(c.oid, 'pg_class') is null
               or (c.relkind in ('r', 'p') and not c.relispartition and a.attname is not null
                   and col_description(c.oid, a.attnum) is null))
        """
    ).fetchall()
    assert missing == []


def test_every_function_type_and_the_schema_have_a_comment(conn):
    functions = conn.execute(
        "select p.oid::regprocedure::text from pg_proc p "
        "where p.pronamespace = 'audit'::regnamespace "
        "and coalesce(obj_description(p.oid, 'pg_proc'), '') !~ '\\S.*\\n'"
    ).fetchall()
    assert functions == []  # a description line, then the fingerprint line
    # domains, and composite types that are no table's row type
    types = conn.execute(
        "select t.typname from pg_type t left join pg_class c on c.oid = t.typrelid "
        "where t.typnamespace = 'audit'::regnamespace "
        "and (t.typtype = 'd' or c.relkind = 'c') "
        "and obj_description(t.oid, 'pg_type') is null"
    ).fetchall()
    assert types == []
    assert conn.execute("select obj_description('audit'::regnamespace, 'pg_namespace')").fetchone()[
        0
    ]
