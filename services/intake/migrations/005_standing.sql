-- Who may do what to a person (services/runtime/access.py): an intake says on which grounds
-- it was attached to its person ('met': a first contact, or the organisation had met them;
-- 'consent': a recipient under a live consent, which does not make it one that met them),
-- and a consent seen says which organisation recorded it.
ALTER TABLE intakes
    ADD COLUMN basis text NOT NULL DEFAULT 'met' CHECK (basis IN ('met', 'consent'));
ALTER TABLE consents ADD COLUMN org text;
