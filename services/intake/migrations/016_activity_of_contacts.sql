-- Retention without reading every contact (issue #12): `activity` now holds each person's
-- last activity of any kind, their own contacts included, so the daily retention pass reads
-- the people past the cut-off by an index instead of grouping the whole intakes table.
--
-- A trigger keeps it current on every contact, whoever writes it: during a rolling upgrade
-- the intake processes of the previous version go on recording contacts after this
-- migration, and a person met again by one of them must not look inactive (and be erased).
-- It is created first: it waits for the contacts being written and holds new ones back until
-- this migration commits, so the backfill below misses none.
CREATE OR REPLACE FUNCTION activity_of_contact() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO intake.activity (person_id, last_at) VALUES (NEW.person_id, NEW.contacted_at)
    ON CONFLICT (person_id) DO UPDATE SET last_at = EXCLUDED.last_at
    WHERE intake.activity.last_at < EXCLUDED.last_at;
    RETURN NULL;
END $$;
CREATE OR REPLACE TRIGGER activity_of_contact AFTER INSERT ON intakes
    FOR EACH ROW EXECUTE FUNCTION activity_of_contact();

INSERT INTO activity (person_id, last_at)
SELECT i.person_id, max(i.contacted_at) FROM intakes i
WHERE NOT EXISTS (SELECT 1 FROM people p WHERE p.person_id = i.person_id
                  AND p.erased_at IS NOT NULL)
GROUP BY i.person_id
ON CONFLICT (person_id) DO UPDATE SET last_at = EXCLUDED.last_at
WHERE activity.last_at < EXCLUDED.last_at;
CREATE INDEX IF NOT EXISTS activity_last_at ON activity (last_at);
