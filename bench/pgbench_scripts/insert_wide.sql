\set owner random(1, 500)
insert into {table} (
  name, email, phone, status, condition, notes, owner_id,
  first_name, last_name, date_of_birth, preferred_language, preferred_contact, mobile_phone,
  address_line1, city, state, postal_code, country, employer, occupation, household_size,
  referral_source, marketing_campaign, lead_score, first_contact_at, last_contact_at,
  next_follow_up_at, consent_sms, consent_email, is_verified, incident_at,
  statute_deadline_at, intake_summary, case_description, has_insurance, annual_income,
  estimated_value, medical_expenses, lost_wages, fee_percent, costs_advanced, lawruler_id)
values ('Client ' || :owner, md5(random()::text) || '@example.com',
        '+1-555-' || lpad((random() * 9999)::int::text, 4, '0'), 'new', 'stable',
        md5(random()::text) || ' ' || md5(random()::text) || ' called back, wants a follow-up',
        :owner,
        'Maria', 'Client' || :owner, date '1980-05-17', 'en', 'sms', '+1-555-0101',
        :owner || ' Main Street', 'Austin', 'TX', '73301', 'US', 'Employer ' || :owner, 'nurse', 3,
        'tv', 'campaign-7', 42.5, now(), now(),
        now() + interval '7 days', true, false, true, now() - interval '30 days',
        now() + interval '700 days', md5(random()::text) || ' rear-ended at a light, neck pain',
        'Case of client ' || :owner, true, 52000, 25000, 8000, 3000, 33.33, 0, 700000 + :owner);
