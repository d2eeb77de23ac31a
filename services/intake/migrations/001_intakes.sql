CREATE TABLE intakes (
    id               uuid        PRIMARY KEY,
    org              text        NOT NULL,
    person_id        uuid        NOT NULL,
    site             text        NOT NULL,
    channel          text        NOT NULL,
    contacted_at     timestamptz NOT NULL,
    duration_minutes integer,
    needs            text[]      NOT NULL,
    flags            text[]      NOT NULL,
    age_bracket      text,
    commune          text,
    visit_number     integer     NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX intakes_person ON intakes (person_id);
CREATE INDEX intakes_org_created ON intakes (org, created_at, id);
