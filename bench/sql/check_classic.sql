-- Sanity, not timing: what the classic trigger logged for one bulk statement on a table
-- (its rows above event id %(after)s): how many rows, and how many hold what they
-- should. The bulk UPDATE sets status to 'closed' on rows that had another status, so
-- each of its rows has exactly that in changed_fields and the old row in row_data; a
-- DELETE's rows have the old row in row_data and no changed_fields.
select count(*),
       count(*) filter (
         where case action
                 when 'U' then changed_fields = hstore('status', 'closed')
                               and row_data -> 'status' <> 'closed'
                 when 'D' then changed_fields is null and row_data -> 'id' is not null
               end)
from classic_audit.logged_actions
where event_id > %(after)s and relid = %(table)s::regclass;
