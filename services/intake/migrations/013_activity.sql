-- Retention (issue #14): the last activity this service learns from the other services'
-- events (a consent granted, a referral created, requested or moved), beside the contacts it
-- records itself. A person's data is erased once every organisation that met them is past its
-- retention period after the last of these, and no consent of theirs is live.
CREATE TABLE activity (
    person_id uuid        PRIMARY KEY,
    last_at   timestamptz NOT NULL
);
CREATE INDEX intakes_person_contacted ON intakes (person_id, contacted_at);
