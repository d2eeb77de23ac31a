-- Contacts recorded before the access rule (005) quoted any person_id they were given. Only
-- the organisation that recorded a person's first contact is known to have met them; the
-- others attached their contacts on someone else's grounds.
UPDATE intakes i SET basis = 'consent'
 WHERE i.basis = 'met'
   AND i.org <> (SELECT f.org FROM intakes f WHERE f.person_id = i.person_id
                  ORDER BY f.visit_number, f.created_at LIMIT 1);
