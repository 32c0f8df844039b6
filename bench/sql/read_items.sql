-- Read every item of one action inside the server.
select count(*), sum(length(old::text) + length(new::text))
from audit.action_items({action_id});
