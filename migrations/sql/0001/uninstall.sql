-- placeholder until the lead's SQL lands
drop schema if exists audit cascade;
