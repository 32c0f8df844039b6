\set owner random(1, 500)
insert into {table} (name, email, phone, status, condition, notes, owner_id)
values ('Client ' || :owner, md5(random()::text) || '@example.com',
        '+1-555-' || lpad((random() * 9999)::int::text, 4, '0'), 'new', 'stable',
        md5(random()::text) || ' ' || md5(random()::text) || ' called back, wants a follow-up',
        :owner);
