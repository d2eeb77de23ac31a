-- Retention without reading every contact (issue #12): `activity` now holds each person's
-- last activity of any kind, their own contacts included (each intake keeps it current in the
-- statement that records it), so the daily retention pass reads the people past the cut-off
-- by an index instead of grouping the whole intakes table.
--
-- During the rolling upgrade, processes of the previous version record contacts without
-- touching `activity`: the retention pass also reads each candidate's last contact (by
-- intakes_person_contacted), so a person met again by one of them is not taken for inactive.
-- A person met for the first time by one of them has no row here until their next activity:
-- the release after this one repeats this backfill (docs/operations.md, "Upgrades").
INSERT INTO activity (person_id, last_at)
SELECT i.person_id, max(i.contacted_at) FROM intakes i
WHERE NOT EXISTS (SELECT 1 FROM people p WHERE p.person_id = i.person_id
                  AND p.erased_at IS NOT NULL)
GROUP BY i.person_id
ON CONFLICT (person_id) DO UPDATE SET last_at = EXCLUDED.last_at
WHERE activity.last_at < EXCLUDED.last_at;
CREATE INDEX IF NOT EXISTS activity_last_at ON activity (last_at);
