-- Sanity, not timing: the bulk UPDATE's action has one item per row, each showing the
-- status change (old status not 'closed', new status 'closed').
select count(*),
       count(*) filter (where old ->> 'status' <> 'closed' and new ->> 'status' = 'closed')
from audit.action_items({action_id});
