\set id random(1, {rows})
update {table} set intake_summary = md5(random()::text) || ' follow-up call, new symptoms' where id = :id;
