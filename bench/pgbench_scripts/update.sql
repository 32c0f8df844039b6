\set id random(1, {rows})
update {table} set notes = md5(random()::text) || ' follow-up call', updated_at = now() where id = :id;
