"""``audit-capture``: the command line of audit_capture.

    audit-capture --database-url postgresql://dba@db/crm migrate upgrade
    audit-capture track clients --resource client --label-column name --status-column status
    audit-capture status

The database comes from ``--database-url`` or ``AUDIT_CAPTURE_DATABASE_URL``. Every
failure (bad URL, server down, SQL error) is one line on stderr, ``Error: ...``, and a
non-zero exit code; never a traceback.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import sys

import click
import psycopg

from audit_capture import database, migrate
from audit_capture.database import DatabaseUnavailable
from audit_capture.errors import AuditCaptureError

URL_ENVVAR = "AUDIT_CAPTURE_DATABASE_URL"


def one_line(exc: BaseException) -> str:
    """A single readable line describing ``exc`` (a database error's primary message)."""
    original = getattr(exc, "orig", None)  # SQLAlchemy wraps the driver's error
    if isinstance(original, BaseException):
        exc = original
    diag = getattr(exc, "diag", None)
    message = getattr(diag, "message_primary", None) if diag is not None else None
    if not message:
        text = str(exc).strip()
        message = text.splitlines()[0] if text else type(exc).__name__
    return message.strip()


#: The commands that need an extra (pyproject.toml's optional-dependencies): a module it
#: brings that is missing makes the command say which extra to install.
EXTRA_OF_COMMAND = {"viewer": "viewer", "demo": "demo"}


class AuditCaptureGroup(click.Group):
    """A click group that turns expected failures into ``Error: <one line>``."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except DatabaseUnavailable as exc:
            raise click.ClickException(str(exc)) from None
        except ModuleNotFoundError as exc:
            extra = EXTRA_OF_COMMAND.get(ctx.invoked_subcommand or "")
            if extra is None or (exc.name or "").partition(".")[0] in ("", "audit_capture"):
                raise  # a core command, or the package itself broken: not a missing extra
            raise click.ClickException(
                f"audit-capture {ctx.invoked_subcommand} needs the {extra} extra"
                f" ({exc.name} is not installed): pip install 'audit-capture[{extra}]'"
            ) from None
        except psycopg.Error as exc:
            raise click.ClickException(one_line(exc)) from None
        except Exception as exc:  # noqa: BLE001 - narrowed below, re-raised otherwise
            message = _known_failure(exc)
            if message is None:
                raise
            raise click.ClickException(message) from None


def _known_failure(exc: Exception) -> str | None:
    if isinstance(exc, FileNotFoundError):
        return one_line(exc)
    # Alembic and SQLAlchemy are imported only by the commands that run them (slow to
    # import): when they are not loaded, the failure cannot be theirs
    if "sqlalchemy" in sys.modules:
        from sqlalchemy.exc import DBAPIError

        if isinstance(exc, DBAPIError):
            return one_line(exc)
    if "alembic" in sys.modules:
        from alembic.util import CommandError

        if isinstance(exc, CommandError):
            return one_line(exc)
    return None


def database_url(ctx: click.Context) -> str:
    url = ctx.find_root().obj.get("database_url")
    if not url:
        raise click.ClickException(f"no database URL: pass --database-url or set {URL_ENVVAR}")
    return url


@click.group(cls=AuditCaptureGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--database-url",
    envvar=URL_ENVVAR,
    metavar="URL",
    help=f"libpq URL of the database, e.g. postgresql://user@host:5432/db (env: {URL_ENVVAR}).",
)
@click.version_option(package_name="audit-capture")
@click.pass_context
def cli(ctx: click.Context, database_url: str | None) -> None:
    """Action-level audit log for PostgreSQL."""
    ctx.ensure_object(dict)
    ctx.obj["database_url"] = database_url


def _store_database_url(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.find_root().obj["database_url"] = value


#: --database-url after a subcommand too (``audit-capture track clients --database-url
#: URL``), as after the program's name: a global flag anywhere on the line.
database_url_option = click.option(
    "--database-url",
    metavar="URL",
    expose_value=False,
    callback=_store_database_url,
    help=f"libpq URL of the database (as before the subcommand; env: {URL_ENVVAR}).",
)


# -- migrate -----------------------------------------------------------------------


@cli.group("migrate")
@database_url_option
def migrate_group() -> None:
    """Install, upgrade or remove the audit schema (the package's own Alembic chain)."""


@migrate_group.command("upgrade")
@database_url_option
@click.argument("revision", default="head")
@click.option("--sql", "as_sql", is_flag=True, help="Print the SQL instead of running it.")
@click.pass_context
def migrate_upgrade(ctx: click.Context, revision: str, as_sql: bool) -> None:
    """Install or upgrade the audit schema to REVISION (default: head)."""
    if as_sql:
        migrate.upgrade_sql(revision)
        return
    url = database_url(ctx)
    before = migrate.current(url)
    migrate.upgrade(url, revision)
    after = migrate.current(url)
    if before == after:
        click.echo(f"audit schema already at {after}")
    else:
        click.echo(f"audit schema upgraded: {before or 'not installed'} -> {after}")


@migrate_group.command("downgrade")
@database_url_option
@click.argument("revision")
@click.pass_context
def migrate_downgrade(ctx: click.Context, revision: str) -> None:
    """Downgrade the audit schema to REVISION; 'base' removes it (the log included)."""
    url = database_url(ctx)
    before = migrate.current(url)
    migrate.downgrade(url, revision)
    after = migrate.current(url)
    click.echo(
        f"audit schema downgraded: {before or 'not installed'} -> {after or 'not installed'}"
    )


@migrate_group.command("repair")
@database_url_option
@click.pass_context
def migrate_repair(ctx: click.Context) -> None:
    """Apply the head SQL again at head: restores modified or dropped audit functions and,
    run by a superuser, the event triggers of fast capture. The log stays."""
    try:
        revision = migrate.repair(database_url(ctx))
    except AuditCaptureError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"audit schema {revision} applied again: run audit-capture status to check")


@migrate_group.command("current")
@database_url_option
@click.pass_context
def migrate_current(ctx: click.Context) -> None:
    """Print the installed revision ('not installed' when there is none)."""
    revision = migrate.current(database_url(ctx))
    head = migrate.head()
    if revision is None:
        click.echo(f"not installed (head is {head})")
    elif revision == head:
        click.echo(f"{revision} (head)")
    else:
        click.echo(f"{revision} (head is {head})")


# -- track / untrack ---------------------------------------------------------------


@cli.command("track")
@database_url_option
@click.argument("table")
@click.option(
    "--resource", "resource_type", required=True, help="resource_type of its actions, e.g. client."
)
@click.option("--label-column", help="Column whose value names a row (resource_label).")
@click.option(
    "--status-column",
    "status_columns",
    multiple=True,
    help="A change to it is a status_change. Repeatable.",
)
@click.option(
    "--ignore", "ignored_columns", multiple=True, help="Column left out of diffs. Repeatable."
)
@click.option(
    "--redact", "redacted_columns", multiple=True, help="Column never stored in clear. Repeatable."
)
@click.option("--label", help='Singular display word, e.g. "Case task".')
@click.option("--label-plural", help='Plural display word, e.g. "Case tasks".')
@click.option(
    "--labels",
    "labels_json",
    metavar="JSON",
    help="Label overrides, a JSON array (see audit.track).",
)
@click.pass_context
def track(
    ctx,
    table,
    resource_type,
    label_column,
    status_columns,
    ignored_columns,
    redacted_columns,
    label,
    label_plural,
    labels_json,
) -> None:
    """Start (or reconfigure) audit capture of TABLE (optionally schema-qualified)."""
    labels = _parse_labels(labels_json)
    with database.connect(database_url(ctx)) as conn:
        _check_tracking_access(conn, "track")
        conn.execute(
            "select audit.track(%s::regclass, %s, %s, %s::text[], %s::text[], %s::text[],"
            " %s::jsonb, %s, %s)",
            (
                table,
                resource_type,
                label_column,
                list(status_columns),
                list(ignored_columns),
                list(redacted_columns),
                json.dumps(labels),
                label,
                label_plural,
            ),
        )
    click.echo(f"tracking {table} as {resource_type}")


@cli.command("untrack")
@database_url_option
@click.argument("table")
@click.pass_context
def untrack(ctx, table) -> None:
    """Stop audit capture of TABLE. Its logged actions stay in the log."""
    with database.connect(database_url(ctx)) as conn:
        _check_tracking_access(conn, "untrack")
        tracked = database.one_value(
            conn,
            "select exists (select from audit.tracked_table where relation = %s::regclass)",
            (table,),
        )
        conn.execute("select audit.untrack(%s::regclass)", (table,))
    click.echo(
        f"no longer tracking {table}" if tracked else f"{table} was not tracked: nothing to do"
    )


def _check_tracking_access(conn: psycopg.Connection, verb: str) -> None:
    """Say what to do when ``verb`` ("track" or "untrack") cannot run here: the schema
    is missing, or the role lacks audit_admin (PostgreSQL's own words name neither the
    fix nor the role)."""
    from audit_capture.tracking_access import ACCESS_SQL, NOT_INSTALLED, TrackingAccess

    access = TrackingAccess.from_row(database.one_row(conn, ACCESS_SQL))
    if not access.installed:
        raise click.ClickException(f"{NOT_INSTALLED}: run `audit-capture migrate upgrade` first")
    if not access.may(verb):
        raise click.ClickException(access.refusal(verb) + " (see README, Roles)")


def _parse_labels(labels_json: str | None):
    if labels_json is None:
        return []
    try:
        labels = json.loads(labels_json)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(
            f"{labels_json!r} is not JSON: {exc}", param_hint="--labels"
        ) from None
    if not isinstance(labels, list):
        raise click.BadParameter(f"{labels_json!r} is not a JSON array", param_hint="--labels")
    return labels


# -- status ------------------------------------------------------------------------


@cli.command("status")
@database_url_option
@click.option(
    "--show-sql",
    "show_sql",
    metavar="TABLE",
    help="Print the SQL that captures TABLE as the database holds it (its audit triggers, "
    "those of its partitions and children, the functions they call) instead.",
)
@click.option(
    "--wal-warning",
    default="1GB",
    show_default=True,
    metavar="SIZE",
    help="Warn (exit 1) when a replication slot of the log retains more WAL than SIZE.",
)
@click.pass_context
def status(ctx, show_sql: str | None, wal_warning: str) -> None:
    """Compare the database with this version: migration, functions, triggers.

    Exits with 1 when anything is outdated, modified, disabled or missing, when a
    tracked table, a partition or an inheritance child of one lacks an audit trigger
    (renamed, replaced, dropped, switched off), or when an index of the audit schema is
    INVALID (a concurrent build that did not finish). On a primary that replicates the
    log (audit-capture replicate), or on its audit server, shows the replication state;
    it exits with 1 when a slot retains more WAL than --wal-warning, lost WAL, or the
    subscription is disabled or stopped.

    With --show-sql TABLE, prints the SQL that captures TABLE instead, to read or diff;
    exits with 1 when TABLE does not exist or is not tracked.
    """
    from audit_capture.status import NotAllowed, NotCaptured, capture_sql, printable, read_status

    if show_sql is not None:
        with database.connect(database_url(ctx), autocommit=True) as conn:
            try:
                text = capture_sql(conn, show_sql)
            except (NotCaptured, NotAllowed) as exc:
                raise click.ClickException(str(exc)) from None
        click.echo(printable(text), nl=False)
        return
    from audit_capture.replication import parse_size

    try:
        wal_warning_bytes = parse_size(wal_warning)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--wal-warning") from None
    with database.connect(database_url(ctx), autocommit=True) as conn:
        result = read_status(conn, wal_warning_bytes)
    _print_status(result)
    if not result.ok:
        ctx.exit(1)


def _print_status(result) -> None:
    m = result.migration
    click.echo(f"migration: {m.installed or '-'} (package head {m.head}): {m.state}")
    if result.capture_mode == "fast":
        click.echo(
            "capture: fast (a function per tracked table,"
            " remade after ALTER TABLE by an event trigger)"
        )
    elif result.capture_mode == "generic":
        click.echo(
            "capture: generic (no ALTER TABLE event trigger: installed without a superuser; "
            'see the README, "Fast capture and ALTER TABLE")'
        )
    if result.functions:
        click.echo("functions:")
        for function in result.functions:
            click.echo(f"  {function.signature}: {function.state}")
    if result.tables:
        click.echo("tracked tables:")
        for table in result.tables:
            click.echo(f"  {table.relation} ({table.resource_type}): {table.state}")
            for trigger in table.triggers:
                enabled = "enabled" if trigger.enabled else "disabled"
                click.echo(f"    trigger {trigger.name} ({enabled}): {trigger.state}")
            for gap in table.gaps:
                click.echo(f"    not captured: {gap}")
    elif m.installed:
        click.echo("tracked tables: none")
    for index in result.invalid_indexes:
        click.echo(f"index {index}")
    if result.replication is not None:
        _print_replication(result.replication)
    click.echo("status: ok" if result.ok else "status: NOT OK", err=not result.ok)


def _print_replication(state) -> None:
    from audit_capture.replication import format_size

    publication, subscription = state.publication, state.subscription
    if publication is not None:
        tables = ", ".join(publication.tables) or "no table"
        via = ", via the partition root" if publication.via_root else ""
        click.echo(
            f"replication (primary): publication {publication.name} ({tables};"
            f" {publication.publishes or 'nothing'}{via}),"
            f" max_slot_wal_keep_size = {publication.max_slot_wal_keep_size}"
        )
        if not publication.slots:
            click.echo("  slots: none (no subscriber has subscribed yet)")
        for slot in publication.slots:
            if slot.lag_seconds is not None:
                seconds = f"{slot.lag_seconds:.1f} s"
            elif slot.lag_bytes == 0:
                seconds = "0 s"
            elif slot.lag_seconds_hidden:
                seconds = "? s (grant pg_monitor to read it)"
            else:
                seconds = "? s"
            lag = "?" if slot.lag_bytes is None else format_size(slot.lag_bytes)
            retained = "?" if slot.retained_bytes is None else format_size(slot.retained_bytes)
            click.echo(
                f"  slot {slot.name}: {'active' if slot.active else 'INACTIVE'}, lag {lag}"
                f" / {seconds}, WAL retained {retained} ({slot.wal_status or '?'})"
            )
    if subscription is not None:
        worker = "applying" if subscription.worker_running else "NOT RUNNING"
        enabled = "enabled" if subscription.enabled else "DISABLED"
        click.echo(
            f"replication (subscriber): subscription {subscription.name} ({enabled},"
            f" {worker}, slot {subscription.slot or '-'})"
        )
        for table, table_state in subscription.tables:
            click.echo(f"  {table}: {table_state}")
        if subscription.last_message_seconds is not None:
            click.echo(
                f"  last message from the primary {subscription.last_message_seconds:.1f} s"
                " ago (lag in bytes: audit-capture status on the primary)"
            )
        if subscription.apply_errors or subscription.sync_errors:
            click.echo(
                f"  errors: {subscription.apply_errors or 0} applying,"
                f" {subscription.sync_errors or 0} copying (the server log says why)"
            )
        if subscription.own_id_range:
            click.echo("  this server's own actions take ids from 1,000,000,000,000,000 up")
    for warning in state.warnings:
        click.echo(f"  WARNING: {warning}")


# -- viewer ------------------------------------------------------------------------


@cli.group("viewer", invoke_without_command=True)
@click.option(
    "--database-url",
    "viewer_database_url",
    metavar="URL",
    help="libpq URL of a role granted audit_reader (default: the group's --database-url).",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=8080,
    show_default=True,
    type=click.IntRange(1, 65535),
    help="Port to listen on.",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="Settings file (TOML): secret_key, [users], timezone, page_size, "
    "statement_timeout_ms. AUDIT_CAPTURE_VIEWER_* variables override it.",
)
@click.option(
    "--threads",
    default=8,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Worker threads of the server.",
)
@click.pass_context
def viewer(ctx, viewer_database_url, host, port, config_file, threads) -> None:
    """Serve the Single Actions viewer (waitress), sign-in required.

    \b
    audit-capture --database-url postgresql://viewer@db/crm viewer --config viewer.toml
    audit-capture viewer hash-password      # a password hash for the [users] table
    audit-capture viewer new-secret         # a secret key for secret_key
    """
    if ctx.invoked_subcommand is not None:
        return
    import os

    from waitress.server import create_server

    from audit_capture.viewer import config as viewer_config
    from audit_capture.viewer.app import close as close_viewer
    from audit_capture.viewer.app import create_app
    from audit_capture.viewer.config import ConfigError

    url = viewer_database_url or database_url(ctx)
    try:
        settings = viewer_config.load(path=config_file, environ=os.environ)
        settings["DATABASE_URL"] = url
        app = create_app(settings)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    _check_viewer_database(url)
    address = f"{_url_host(host)}:{port}"
    try:  # listening from here: the line below says so once it is true
        server = create_server(app, host=host, port=port, threads=threads, ident=VIEWER_IDENT)
    except OSError as exc:
        raise click.ClickException(
            f"cannot serve on {address}: {exc.strerror or exc} (choose another --port or --host)"
        ) from None
    _stop_on_interrupt()
    freeze_startup_objects()
    click.echo(f"audit-capture viewer: serving http://{address}/ (Ctrl-C stops)")
    # returns on Ctrl-C or SIGTERM: waitress takes the KeyboardInterrupt and closes
    try:
        server.run()
    finally:
        close_viewer(app)  # the pool's sessions end before the process does
    click.echo("audit-capture viewer: stopped")


VIEWER_IDENT = "audit-capture-viewer"  # the Server header of its responses


def freeze_startup_objects() -> None:
    """Leave the objects of a long-running server's start (modules, Flask, templates:
    ~50,000) out of Python's full garbage collections from now on (``gc.freeze``).
    Every such collection walked them all: 17-21 ms, a few times per 400 pages, and one
    page over HTTP then took 45 ms more than its neighbours."""
    gc.collect()
    gc.freeze()


def _stop_on_interrupt() -> None:
    """Ctrl-C, or a SIGTERM from a supervisor, ends a long-running command through its
    cleanup (KeyboardInterrupt), even when the shell started it with SIGINT ignored (a
    background job of a script)."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _check_viewer_database(url: str) -> None:
    """Fail at start, in one line, when the viewer could not read the log."""
    from audit_capture.viewer.db import log_access_problem

    with database.connect(url) as conn:
        problem = log_access_problem(conn)
    if problem:
        raise click.ClickException(problem)


@viewer.command("new-secret")
def new_secret() -> None:
    """Print a fresh random secret key for the settings' secret_key."""
    from audit_capture.viewer.config import new_secret as make

    click.echo(make())


@viewer.command("hash-password")
@click.option(
    "--password",
    help="The password (better left out: it is then prompted for, "
    "or read as one line from a pipe).",
)
def hash_password(password: str | None) -> None:
    """Print a password hash for the viewer's [users] table.

    At a terminal the password is prompted for twice, hidden; from a pipe
    (echo "$PASSWORD" | audit-capture viewer hash-password) its first line is read.
    """
    from werkzeug.security import generate_password_hash

    if password is None:
        stdin = sys.stdin
        if stdin.isatty():
            password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
        else:
            password = stdin.readline().rstrip("\r\n")
            if not password:
                raise click.ClickException("no password: the first line of the input is empty")
    if len(password) < 8:
        raise click.ClickException("use a password of at least 8 characters")
    click.echo(generate_password_hash(password))


def main(argv: list[str] | None = None) -> None:
    cli.main(args=argv, prog_name="audit-capture")


# -- demo --------------------------------------------------------------------------


@cli.command("demo")
@database_url_option
@click.option(
    "--port",
    default=8080,
    show_default=True,
    type=click.IntRange(1, 65535),
    help="Port of the viewer, on 127.0.0.1.",
)
@click.option(
    "--keep",
    "keep_dir",
    type=click.Path(file_okay=False),
    metavar="DIR",
    help="Keep the demo database in DIR between runs (prepared once, reused after).",
)
@click.option(
    "--prepare-only", is_flag=True, help="Prepare the demo, print what it holds, and stop."
)
@click.option("--timezone", default="UTC", show_default=True, help="Time zone the viewer shows.")
@click.option(
    "--history",
    default=0,
    metavar="N",
    type=click.IntRange(0, 50_000_000),
    help="Add N generated older actions before the month of activity (up to 50,000,000;"
    " a million take about 35 s), marked as generated history.",
)
@click.pass_context
def demo(ctx, port, keep_dir, prepare_only, timezone, history) -> None:
    """The sample CRM, a month of realistic activity, and the viewer: one command.

    Starts a throwaway PostgreSQL (or uses --database-url), installs the audit schema
    and the CRM, generates activity through the CRM application, and serves the viewer
    on http://127.0.0.1:PORT/ until Ctrl-C, then stops and removes everything (with
    --keep, the data stays in DIR; with --database-url, in that database). --history N
    adds N older actions generated in SQL (their context says {"demo": "generated
    history"}), to show the viewer at scale.
    """
    import time

    from audit_capture.demo import runner
    from audit_capture.demo.history import NotSuperuser

    _stop_on_interrupt()
    started = time.monotonic()
    total = 4

    def step(number: int, text: str) -> None:
        click.echo(f"[{number}/{total}] {text}", err=True)

    url = ctx.find_root().obj.get("database_url")
    server = None
    try:
        if url is None:
            step(
                1,
                "starting a throwaway PostgreSQL on 127.0.0.1"
                + (f" (data kept in {keep_dir})" if keep_dir else ""),
            )
            server = _start_demo_server(keep_dir)
            url = runner.demo_database(server)
        else:
            step(1, f"using {database.describe_url(url)}")
        if keep_dir and server is not None and runner.is_prepared(url):
            step(2, "reusing the kept demo database")
            if history:
                click.echo(
                    f"      --history {history} is not applied: the kept log stays as it was"
                    f" prepared (remove {keep_dir} to prepare it again)",
                    err=True,
                )
            viewer_url = runner.reset_viewer_password(url)
            prepared = None
        else:
            step(2, "preparing the demo")
            try:
                prepared = runner.prepare(
                    url, step=lambda text: click.echo(f"      {text}", err=True), history=history
                )
            except NotSuperuser as exc:
                raise click.ClickException(str(exc)) from None
            viewer_url = prepared.viewer_url
        step(3, "building the viewer")
        demo = runner.viewer_app(url, viewer_url, timezone=timezone)
        summary = f"{prepared.actions} actions" if prepared else "the kept log"
        click.echo(f"ready in {time.monotonic() - started:.1f} s: {summary}", err=True)
        if prepared and prepared.history:
            click.echo(
                f"      {prepared.history:,} generated history actions"
                " (older than the month of activity)",
                err=True,
            )
        if prepare_only:
            return
        from waitress.server import create_server

        step(4, f"serving the viewer ({_demo_stop_note(server, keep_dir)})")
        try:
            # listening from here
            web = create_server(demo.app, host="127.0.0.1", port=port, threads=4)
        except OSError as exc:
            raise click.ClickException(
                f"cannot serve on 127.0.0.1:{port}: {exc.strerror} (choose another --port)"
            ) from None
        click.echo(
            f"\n  open   http://127.0.0.1:{port}/\n  user   {demo.username}\n"
            f"  password  {demo.password}\n  psql   {_demo_psql(url, server)}\n"
        )
        freeze_startup_objects()
        try:
            web.run()
        finally:
            web.close()
        click.echo("stopping the demo", err=True)
    except KeyboardInterrupt:
        click.echo("stopping the demo", err=True)
    finally:
        if server is not None:
            server.stop()


def _demo_stop_note(server, keep_dir: str | None) -> str:
    """What Ctrl-C does to this demo's data, for the banner."""
    if server is None:
        return "Ctrl-C stops it; the demo stays in the database you gave"
    if keep_dir:
        return f"Ctrl-C stops it; the demo database stays in {keep_dir} for the next run"
    return "Ctrl-C stops it and removes the demo"


def _demo_psql(url: str, server) -> str:
    """A psql command line for the demo database, to copy as is: the throwaway server's
    superuser needs no password (trust, on 127.0.0.1 only); a given URL is shown with
    its password hidden."""
    import shlex

    return "psql " + shlex.quote(url if server is not None else database.describe_url(url))


def _start_demo_server(keep_dir: str | None):
    from audit_capture.embedded import EmbeddedPostgresql, server_bin_dir

    if server_bin_dir() is None:
        raise click.ClickException(
            "PostgreSQL's server binaries (initdb, postgres) are not installed: "
            "on Debian or Ubuntu, sudo apt-get install postgresql (or pass --database-url)"
        )
    try:
        if keep_dir:
            os.makedirs(keep_dir, exist_ok=True)
            return EmbeddedPostgresql(base_dir=os.path.abspath(keep_dir))
        return EmbeddedPostgresql()
    except RuntimeError as exc:
        # e.g. as root, a --keep folder inside a directory the server's user cannot enter
        hint = (
            " (the server runs as 'nobody' when started by root: choose a folder it can reach)"
            if os.geteuid() == 0 and keep_dir
            else ""
        )
        raise click.ClickException(f"PostgreSQL did not start: {one_line(exc)}{hint}") from None


# -- maintain ----------------------------------------------------------------------


@cli.command("maintain")
@database_url_option
@click.option(
    "--months-ahead",
    default=3,
    show_default=True,
    type=click.IntRange(0, 120),
    help="Months after the current one whose partitions must exist.",
)
@click.pass_context
def maintain(ctx, months_ahead: int) -> None:
    """Keep the log's month partitions ready; run it every hour from cron:

    17 * * * * audit-capture --database-url postgresql://dba@db/crm maintain

    Creates the current month's partitions and the next N months' where missing, and
    moves rows that landed in the default partitions into their months. Prints what it
    did and exits 0. Needs audit_admin. When the log stays locked longer than it waits
    (half of deadlock_timeout), it changes nothing and exits with 75: the next run does it.
    """
    from audit_capture.partitions import EXIT_LOG_BUSY, LogBusy, NotAllowed, describe
    from audit_capture.partitions import maintain as run_maintain

    with database.connect(database_url(ctx), autocommit=True) as conn:
        try:
            steps = run_maintain(conn, months_ahead)
        except NotAllowed as exc:
            raise click.ClickException(str(exc)) from None
        except LogBusy as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(EXIT_LOG_BUSY)
    for line in describe(steps):
        click.echo(line)


# -- retention ---------------------------------------------------------------------


@cli.command("retention")
@database_url_option
@click.option(
    "--keep",
    "keep_text",
    required=True,
    metavar="N{months|years}",
    help="Whole months kept before the current one, e.g. 24months or 2years.",
)
@click.option("--apply", is_flag=True, help="Drop them (without it: only show what would go).")
@click.option(
    "--require-archive",
    "archive_dir",
    metavar="DIR",
    type=click.Path(file_okay=False),
    help="Refuse a month without an archive in DIR that `archive verify` finds intact.",
)
@click.option(
    "--lock-wait",
    type=click.FloatRange(min=0.1, max=600),
    default=2.0,
    show_default=True,
    metavar="SECONDS",
    help="Give up (changing nothing) when the log is locked longer than this.",
)
@click.pass_context
def retention(ctx, keep_text: str, apply: bool, archive_dir: str | None, lock_wait: float):
    """Drop the months of the log older than --keep (whole partitions), and log it.

    Shows each month that would go (actions, chunks, size on disk) and changes nothing
    unless --apply. The current month and the 3 before it, and the default partitions,
    never go. Only for audit_admin. Exits with 1 when refused (nothing changed).
    """
    from pathlib import Path

    from audit_capture import retention as retention_module

    try:
        keep_months = retention_module.parse_keep(keep_text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--keep") from None
    from audit_capture.archive import verify_month

    with database.connect(database_url(ctx)) as conn:
        try:
            result = retention_module.run(
                conn,
                keep_months,
                apply=apply,
                archive_dir=None if archive_dir is None else Path(archive_dir),
                verify=None
                if archive_dir is None
                else retention_module.verifier(verify_month, conn),
                lock_wait=lock_wait,
            )
        except retention_module.RetentionRefused as exc:
            raise click.ClickException(str(exc)) from None
    for line in retention_module.report_lines(result, keep_text):
        click.echo(line)


# -- seal and verify ---------------------------------------------------------------


@cli.command("seal")
@database_url_option
@click.option(
    "--wait",
    "wait_seconds",
    type=click.FloatRange(min=0, max=3600),
    default=10.0,
    show_default=True,
    metavar="SECONDS",
    help="How long to wait for transactions older than the newest action to end.",
)
@click.option(
    "--head-file",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="Append the chain's new head to FILE (keep it outside the database).",
)
@click.pass_context
def seal_command(ctx, wait_seconds: float, head_file: str | None) -> None:
    """Seal the log: link every action so far, with its items, into the hash chain.

    Run it every few minutes from cron, keeping the heads on another machine:

    \b
    */5 * * * * audit-capture --database-url postgresql://dba@db/crm \
        seal --head-file /secure/heads.txt

    Seals in id order up to the newest action that every transaction is done with: an
    action whose transaction is still open waits for the next run. Needs audit_admin.
    """
    from pathlib import Path

    from audit_capture import seal as seal_module

    with database.connect(database_url(ctx)) as conn:
        try:
            result = seal_module.seal(conn, wait_seconds)
        except seal_module.SealRefused as exc:
            raise click.ClickException(str(exc)) from None
    if head_file and result.head:
        seal_module.append_head(Path(head_file), result.head)
    for line in seal_module.seal_lines(result):
        click.echo(line)


@cli.command("verify")
@database_url_option
@click.option(
    "--expect",
    "expect",
    multiple=True,
    metavar="HEAD|FILE",
    help="A head saved earlier (17:3fa4...), or a file of them (seal --head-file) or an "
    "archive manifest; it must still be in the chain. Repeatable.",
)
@click.pass_context
def verify_command(ctx, expect: tuple[str, ...]) -> None:
    """Check the log against its hash chain: exit 0 when intact, 1 when not.

    Recomputes every sealed action's digest and the chain, and names the first action
    altered, removed (and not by a recorded retention) or added out of place. A rewrite
    of the whole chain is caught by --expect: heads kept outside the database. Needs
    audit_reader.
    """
    from audit_capture import seal as seal_module

    try:
        heads = [head for value in expect for head in seal_module.expected_heads(value)]
        with database.connect(database_url(ctx)) as conn:
            result = seal_module.verify(conn, heads)
    except seal_module.SealRefused as exc:
        raise click.ClickException(str(exc)) from None
    for line in seal_module.verify_lines(result):
        click.echo(line)
    if not result.intact:
        ctx.exit(1)


# -- tail --------------------------------------------------------------------------


@cli.command("tail")
@database_url_option
@click.option(
    "--follow", "-f", is_flag=True, help="Keep reading: print new actions as they commit."
)
@click.option(
    "--after",
    type=click.IntRange(min=0, max=2**63 - 1),
    default=0,
    show_default=True,
    metavar="ID",
    help="Start after this action id (the last id printed before: resume).",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["ndjson", "ocsf"]),
    default="ndjson",
    show_default=True,
    help="ndjson: the action's columns; ocsf: an OCSF 1.7.0 event.",
)
@click.option(
    "--interval",
    type=click.FloatRange(min=0.05, max=3600),
    default=1.0,
    show_default=True,
    metavar="SECONDS",
    help="With --follow: how often to look for new actions.",
)
@click.option(
    "--wait",
    "wait_seconds",
    type=click.FloatRange(min=0, max=3600),
    default=10.0,
    show_default=True,
    metavar="SECONDS",
    help="Without --follow: how long to wait for transactions holding lower ids to end.",
)
@click.pass_context
def tail_command(
    ctx, follow: bool, after: int, output_format: str, interval: float, wait_seconds: float
) -> None:
    """Print the log's actions in id order, one JSON object per line.

    For a shipper (Vector, Fluent Bit, Filebeat) to send to a SIEM; resume with --after
    and the last id it read. Never skips an action: an action whose transaction is still
    open, and every id above it, waits until that transaction ends (ids are drawn before
    commit). Stops cleanly on Ctrl-C or SIGTERM. Needs audit_reader.

    \b
    audit-capture tail --follow --after 41872 --format ocsf
    """
    import time

    from audit_capture import stream

    line_of = stream.formatter(output_format)
    with stream.connect(database_url(ctx)) as conn:
        try:
            stream.check_access(conn)
            stream.check_ids_drawn_here(conn)
        except stream.StreamRefused as exc:
            raise click.ClickException(str(exc)) from None
        tail = stream.Tail(conn, after)
        out = sys.stdout
        deadline = time.monotonic() + wait_seconds
        target: int | None = None
        with stream.StopFlag() as stop:
            try:
                while not stop.stopped:
                    for _action_id, text in tail.settled_lines():
                        out.write(line_of(text) + "\n")
                        if stop.stopped:
                            break
                    out.flush()
                    if follow:
                        stop.wait(interval)
                        continue
                    # once: everything drawn when it started, waiting for open transactions
                    target = tail.newest() if target is None else target
                    if tail.horizon.settled >= target or time.monotonic() >= deadline:
                        break
                    stop.wait(stream.POLL_SECONDS)
            except BrokenPipeError:  # the reader went away (| head): nothing more to say
                # what is still buffered goes nowhere, rather than failing again at exit
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                return
    if not follow and target is not None and tail.horizon.settled < target:
        click.echo(
            f"tail: stopped after id {tail.after}: actions up to {target} wait for"
            f" transactions still open; run again with --after {tail.after}",
            err=True,
        )


# -- restore -----------------------------------------------------------------------


@cli.command("restore")
@database_url_option
@click.argument("action_id", type=click.IntRange(min=1, max=2**63 - 1), metavar="ACTION_ID")
@click.option(
    "--item",
    type=click.IntRange(min=1, max=2**31 - 1),
    metavar="N",
    help="The item (row) of a many-row action to restore.",
)
@click.option(
    "--all-items", is_flag=True, help="Restore every row of the action (one transaction)."
)
@click.option(
    "--force",
    is_flag=True,
    help="Restore although a later action touched the row, where that overwrites nothing.",
)
@click.option("--actor-id", metavar="ID", help="audit.actor_id of the restore (an admin).")
@click.option("--actor-name", metavar="NAME", help="audit.actor_name of the restore.")
@click.pass_context
def restore_command(
    ctx,
    action_id: int,
    item: int | None,
    all_items: bool,
    force: bool,
    actor_id: str | None,
    actor_name: str | None,
) -> None:
    """Bring back the rows ACTION_ID deleted, or put back the columns it updated.

    The restore is an action of its own ("Client restored", create or update) whose
    context is {"restores": ACTION_ID}, by --actor-id/--actor-name as an admin (else the
    database role). It writes with your role's privileges on the table and needs
    audit_admin. Refused, changing nothing, when the row exists again, a later action
    changed it (--force where nothing later is lost), or a value cannot be put back.
    """
    from audit_capture import restore as restore_module

    if item is not None and all_items:
        raise click.ClickException("give --item N or --all-items, not both")
    with database.connect(database_url(ctx)) as conn:
        try:
            result = restore_module.restore(
                conn,
                action_id,
                item=item,
                all_items=all_items,
                force=force,
                actor_id=actor_id,
                actor_name=actor_name,
            )
        except restore_module.RestoreRefused as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(restore_module.report_line(result))


# -- archive -----------------------------------------------------------------------


@cli.group("archive", invoke_without_command=True)
@database_url_option
@click.option("--before", metavar="YYYY-MM", help="Archive every closed month before this one.")
@click.option(
    "--to",
    "folder",
    type=click.Path(file_okay=False),
    metavar="DIR",
    help="Folder of the archive (created if missing).",
)
@click.pass_context
def archive_group(ctx, before: str | None, folder: str | None) -> None:
    """Write each closed month (UTC) before --before that holds actions as one gzip
    NDJSON file plus a manifest in DIR; months archived already and unchanged are skipped.
    Any role granted audit_reader may run it.

    \b
    audit-capture archive --before 2025-01 --to /srv/audit-archive
    audit-capture archive verify /srv/audit-archive
    audit-capture archive load /srv/audit-archive/audit_log_2024-11.ndjson.gz
    """
    if ctx.invoked_subcommand is not None:
        if before or folder:
            raise click.UsageError("--before and --to go without a subcommand")
        return
    from audit_capture.archive import ArchiveError, Month, archive

    if before is None or folder is None:
        raise click.UsageError("archive needs --before YYYY-MM and --to DIR (or: verify, load)")
    try:
        month = Month.parse(before, option="--before")
        with database.connect(database_url(ctx)) as conn:
            archive(conn, folder, month, say=click.echo)
    except ArchiveError as exc:
        raise click.ClickException(str(exc)) from None


@archive_group.command("verify")
@click.argument("folder", metavar="DIR")
@click.pass_context
def archive_verify(ctx, folder: str) -> None:
    """Check every archived month of DIR against its manifest (size, sha256, counts,
    ranges); each bad one is a line naming its file, and the exit status is 1."""
    from audit_capture.archive import ArchiveError, verify_dir

    try:
        results = verify_dir(folder)
    except ArchiveError as exc:
        raise click.ClickException(str(exc)) from None
    for result in results:
        if result.ok:
            manifest = result.manifest or {}
            click.echo(
                f"{result.month}: ok ({manifest.get('actions', 0):,} actions,"
                f" {manifest.get('items', 0):,} items, sha256 {manifest.get('sha256')})"
            )
        else:
            click.echo(f"Error: {result.problem}", err=True)
    if not all(result.ok for result in results):
        ctx.exit(1)


@archive_group.command("load")
@database_url_option
@click.argument("file", metavar="FILE")
@click.option(
    "--schema",
    default="audit_archive",
    show_default=True,
    help="Schema to load into; 'audit' loads into the audit schema of another database"
    " (installed with migrate upgrade) so that the viewer shows the month.",
)
@click.pass_context
def archive_load(ctx, file: str, schema: str) -> None:
    """Load an archived month (FILE: its .ndjson.gz or its manifest) into SCHEMA,
    after checking it against its manifest: all or nothing."""
    from audit_capture.archive import ArchiveError, load

    try:
        with database.connect(database_url(ctx)) as conn:
            outcome = load(conn, file, schema)
    except ArchiveError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"{outcome.month} loaded into schema {outcome.schema}: {outcome.actions:,} actions,"
        f" {outcome.chunks:,} chunks, {outcome.items:,} items"
    )


# -- replicate ---------------------------------------------------------------------


@cli.command("replicate")
@database_url_option
@click.option(
    "--subscriber",
    "subscriber_url",
    required=True,
    metavar="URL",
    help="libpq URL of the audit server's database (a superuser there on PostgreSQL 15).",
)
@click.option(
    "--primary-conninfo",
    metavar="CONNINFO",
    help="How the subscriber's server reaches the primary (libpq URL or key=value), when"
    " not as --database-url; its user needs LOGIN, REPLICATION and audit_reader.",
)
@click.option(
    "--slot-name",
    metavar="NAME",
    help="Replication slot on the primary (default: audit_capture_<subscriber database>).",
)
@click.pass_context
def replicate(ctx, subscriber_url, primary_conninfo, slot_name) -> None:
    """Replicate the log to an audit server (logical replication; inserts and updates
    only: nothing deleted or dropped on this primary leaves the audit server).

    \b
    audit-capture --database-url postgresql://postgres@primary/crm replicate \\
        --subscriber postgresql://postgres@audit/crm_audit \\
        --primary-conninfo 'host=primary dbname=crm user=audit_replicator'

    Run with the primary's URL: checks wal_level = logical, publishes audit.action_log
    and audit.action_item_chunk, installs the audit schema on the subscriber at the
    primary's revision, and subscribes (existing actions are copied). Running it again
    checks and says it is set up.
    """
    from audit_capture.replication import ReplicationError
    from audit_capture.replication import replicate as set_up

    try:
        set_up(
            database_url(ctx),
            subscriber_url,
            primary_conninfo=primary_conninfo,
            slot_name=slot_name,
            say=click.echo,
        )
    except ReplicationError as exc:
        raise click.ClickException(str(exc)) from None


if __name__ == "__main__":
    main(sys.argv[1:])
