-- A person's restriction (GDPR art. 18) or objection (art. 21): processing stops without
-- erasing; no new contact or read until it is lifted (services/intake/rights.py).
CREATE TABLE restrictions (
    person_id uuid        PRIMARY KEY,
    "right"   text        NOT NULL CHECK ("right" IN ('restriction', 'objection')),
    org       text        NOT NULL,
    since     timestamptz NOT NULL DEFAULT now()
);
