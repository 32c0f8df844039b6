-- Indexes of the viewer (audit_capture.viewer): what its filters need to stay fast at
-- ten million actions, and nothing more, since every audited write pays for every
-- index of the log. Measured with bench/viewer_speed.py (figures in its report).
--
-- Pages are keyset pages newest first, ordered by (occurred_at DESC, id DESC): the log's
-- time index (action_log_occurred_at_idx, 02_action_log.sql) serves the unfiltered
-- list and every filter on a common value (web, admin, update: the newest 50 matches are
-- a few hundred entries down the time index). A filter on a RARE value is the trap:
-- walking the time index to collect 50 rows of an actor whose rows are all old reads
-- nearly the whole index (1 s and more at 10M). A composite index (column,
-- occurred_at DESC, id DESC) answers such a filter with one seek, in page order.
-- Low-cardinality columns (action_type, actor_type, source, resource_type) get no
-- composite index in page order: measured, their first pages are fast on the time
-- index (every value holds more than 1% of the log), and each such index would cost
-- ~400 MB at 10M and slow every write. A combination of them that matches nothing (or
-- almost nothing: mobile + system) is the trap there, so one small index of those four
-- columns alone (action_log_kind_idx: btree deduplication stores each combination once
-- with its row pointers) serves the query layer as a PROBE: none -> an empty page at
-- once; a few -> fetched through it and sorted; many -> the time walk.

-- Actor filter (actor=id:<actor_id>): every actor with an id; a departed admin's rows are
-- all old. Partial: rows without actor_id (direct database changes) never match.
-- source is a KEY, second: an actor with a source is one seek in page order, whether
-- they use it daily or never (a busy admin + a source they never use: with source only
-- INCLUDEd, every one of the admin's 900,000 entries was read to find none, 76 ms at
-- 10M). An actor alone is one seek per source (four values and null, the closed
-- vocabulary of audit.sources()), merged in page order by the viewer
-- (audit_capture.viewer.pages). Same size as (actor_id, occurred_at, id) INCLUDE (source).
create index if not exists action_log_actor_source_idx on audit.action_log (actor_id, source, occurred_at desc, id desc) where actor_id is not null;

-- Actor filter for actors without an id (actor=name:<actor_name>: database roles making
-- direct changes), and load_options' skip scan over those names. Partial: only the rows
-- that have no actor_id, a small part of the log.
create index if not exists action_log_actor_name_idx on audit.action_log (actor_name, occurred_at desc, id desc) where actor_id is null;

-- Rarity probe of the low-cardinality filters (audit_capture.viewer.kind_probe),
-- and the fetch of a rare combination's few rows. Key order: the closed vocabularies
-- first (the probe names every value of an unfiltered leading column), resource_type,
-- the open one, last.
create index if not exists action_log_kind_idx on audit.action_log (actor_type, action_type, source, resource_type);

-- Text search (q=...): words of the action label, actor name and resource label, and the
-- action's day and month (audit.time_buckets), as a second column of the same GIN index.
-- Why the time: the page wants the newest 50 matches, but GIN returns matches in
-- physical order and gathers every match of the rarest word first ("maria smith" at
-- 10M: the 332,000 entries of "smith" decoded, 32 ms, for a page of 50). A condition on
-- the second column (time_buckets(occurred_at) && '{the last few days}') is a second
-- scan key of the SAME index scan, and GIN skips each key's entries past the other's
-- (its posting lists are sorted by row position, and the log is written in time
-- order): the scan decodes only the window's entries (4 ms for the same page). The
-- viewer picks the window (audit_capture.viewer.text_search).
-- Both expressions must stay character for character those of
-- audit_capture.viewer.filters (TEXT_DOCUMENT, TIME_BUCKETS), or the planner cannot use
-- the index. 'simple': no stemming and no stop words, so names and labels match as typed.
create or replace function audit.time_buckets(occurred_at timestamptz) returns integer[]
language sql immutable parallel safe
-- a SQL-standard body: parsed once, here, so no search_path is ever consulted, and
-- inlined into the index expression (a call per logged row would cost microseconds).
-- Days are even numbers and months odd ones, so that no day is ever taken for a month
-- whatever the year (a window of days must never bring back a month's actions).
return array[
  -- the day: twice the days since 2000-01-01 (UTC)
  2 * ((occurred_at at time zone 'UTC')::date - date '2000-01-01'),
  -- the month: twice the months since January 2000, plus one
  2 * ((extract(year from occurred_at at time zone 'UTC')::integer - 2000) * 12
       + extract(month from occurred_at at time zone 'UTC')::integer - 1) + 1
];
comment on function audit.time_buckets(timestamptz) is
  'Internal: the day (twice the days since 2000-01-01, UTC: even) and the month (twice the months since January 2000, plus one: odd) of an action, the time column of the text-search index.';
-- The viewer (audit_reader) calls it in its text-search condition, and PostgreSQL
-- checks EXECUTE before it inlines it. Granted here: 12_privileges.sql revokes PUBLIC's
-- EXECUTE from the functions that exist when it runs, so from this one on every run but
-- a fresh install's (migrate repair, every later upgrade): without this line the viewer
-- lost it there ("permission denied for function time_buckets").
revoke all on function audit.time_buckets(timestamptz) from public;
grant execute on function audit.time_buckets(timestamptz) to audit_reader;

-- gin_pending_list_limit: GIN adds a new row's entries to a pending list, and the write
-- that fills the list merges all of it into the index, within the audited statement.
-- At the default 4 MB that one write took 80-150 ms (bench/write_overhead.py's max
-- latency); at 256 kB it takes under 10 ms, the average write costs the same, and the
-- text search, which reads the whole pending list at every query, reads less.
-- Partitions' indexes take it from this one (those created since, too).
create index if not exists action_log_text_time_idx on audit.action_log using gin (to_tsvector('simple', action || ' ' || coalesce(actor_name, '') || ' ' || coalesce(resource_label, '')), audit.time_buckets(occurred_at)) with (gin_pending_list_limit = 256);

comment on index audit.action_log_actor_source_idx is
  'Viewer: actor filter by actor_id, with or without a source, in page order (one seek per source; rare and departed actors without walking the time index).';
comment on index audit.action_log_kind_idx is
  'Viewer: rarity probe of combined low-cardinality filters (none, few or many matches), and the fetch of a rare combination.';
comment on index audit.action_log_actor_name_idx is
  'Viewer: actor filter by name for actors without actor_id (database roles), in page order.';
comment on index audit.action_log_text_time_idx is
  'Viewer: full-text search (''simple'' configuration) over action, actor_name and resource_label, with the action''s day and month (audit.time_buckets) to search the newest days first.';
