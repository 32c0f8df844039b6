-- Stamps every function of the schema with its fingerprint, as the last line of its
-- COMMENT, so that `audit-capture status` can tell a function edited by hand.

do $$
declare
  fn record;
begin
  for fn in
    select p.oid, p.oid::regprocedure as signature,
           regexp_replace(coalesce(obj_description(p.oid, 'pg_proc'), ''),
                          '\n?audit_capture sha256:[0-9a-f]*$', '') as doc
    from pg_proc p
    where p.pronamespace = 'audit'::regnamespace
  loop
    execute format('comment on function %s is %L', fn.signature,
                   fn.doc || E'\naudit_capture sha256:' || audit.function_fingerprint(fn.oid));
  end loop;
end
$$;

reset role;
