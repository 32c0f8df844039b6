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
-- INCLUDE (source): an actor with a source they rarely or never use (a busy admin +
-- mobile) is tested in the index (index-only: 8 ms at 10M), not by a heap fetch for each
-- of the actor's rows (128 ms for 70,000). source alone: +19% (408 -> 487 MB at 10M),
-- where action_type and resource_type too would make it +56% (638 MB).
create index if not exists action_log_actor_idx on audit.action_log (actor_id, occurred_at desc, id desc) include (source) where actor_id is not null;

-- Actor filter for actors without an id (actor=name:<actor_name>: database roles making
-- direct changes), and load_options' skip scan over those names. Partial: only the rows
-- that have no actor_id, a small part of the log.
create index if not exists action_log_actor_name_idx on audit.action_log (actor_name, occurred_at desc, id desc) where actor_id is null;

-- Rarity probe of the low-cardinality filters (audit_capture.viewer.query._kind_probe),
-- and the fetch of a rare combination's few rows. Key order: the closed vocabularies
-- first (the probe names every value of an unfiltered leading column), resource_type,
-- the open one, last.
create index if not exists action_log_kind_idx on audit.action_log (actor_type, action_type, source, resource_type);

-- Text search (q=...): words of the action label, actor name and resource label, as
-- prefixes. The expression must stay character for character the one of
-- audit_capture.viewer.filters.TEXT_DOCUMENT, or the planner cannot use the index.
-- 'simple': no stemming and no stop words, so names and labels match as typed.
create index if not exists action_log_text_idx on audit.action_log using gin (to_tsvector('simple', action || ' ' || coalesce(actor_name, '') || ' ' || coalesce(resource_label, '')));

comment on index audit.action_log_actor_idx is
  'Viewer: actor filter by actor_id, in page order (rare and departed actors without walking the time index).';
comment on index audit.action_log_kind_idx is
  'Viewer: rarity probe of combined low-cardinality filters (none, few or many matches), and the fetch of a rare combination.';
comment on index audit.action_log_actor_name_idx is
  'Viewer: actor filter by name for actors without actor_id (database roles), in page order.';
comment on index audit.action_log_text_idx is
  'Viewer: full-text search (''simple'' configuration) over action, actor_name and resource_label.';
