CREATE TABLE consents (
    id               uuid        PRIMARY KEY,
    org              text        NOT NULL,
    person_id        uuid        NOT NULL,
    purposes         text[]      NOT NULL,
    recipients       text[]      NOT NULL,
    categories       text[]      NOT NULL,
    notice_version   text        NOT NULL,
    method           text        NOT NULL,
    witness          text,
    captured_by      text        NOT NULL,
    captured_at_site text,
    granted_at       timestamptz NOT NULL DEFAULT now(),
    valid_until      timestamptz NOT NULL,
    status           text        NOT NULL DEFAULT 'active'
);
CREATE INDEX consents_person ON consents (person_id);
