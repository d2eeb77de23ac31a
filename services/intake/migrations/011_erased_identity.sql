-- An erased person's contacts said they still held an identity (`has_identity`): erasure
-- shredded it but left the flag. The contacts of people erased before the fix say it now.
UPDATE intakes SET has_identity = false
 WHERE has_identity
   AND person_id IN (SELECT person_id FROM people WHERE erased_at IS NOT NULL);
