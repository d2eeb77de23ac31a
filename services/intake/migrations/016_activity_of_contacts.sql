-- Retention without reading every contact (issue #12): `activity` now holds each person's
-- last activity of any kind, their own contacts included (each intake keeps it current in the
-- statement that records it), so the daily retention pass reads the people past the cut-off
-- by this index instead of grouping the whole intakes table.
INSERT INTO activity (person_id, last_at)
SELECT i.person_id, max(i.contacted_at) FROM intakes i
WHERE NOT EXISTS (SELECT 1 FROM people p WHERE p.person_id = i.person_id
                  AND p.erased_at IS NOT NULL)
GROUP BY i.person_id
ON CONFLICT (person_id) DO UPDATE SET last_at = greatest(activity.last_at, EXCLUDED.last_at);
CREATE INDEX IF NOT EXISTS activity_last_at ON activity (last_at);
