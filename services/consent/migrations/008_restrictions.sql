-- The people whose processing is restricted (the intake service's person_restricted
-- events): no consent is recorded for them until it is lifted.
CREATE TABLE restricted (
    person_id uuid        PRIMARY KEY,
    since     timestamptz NOT NULL
);
