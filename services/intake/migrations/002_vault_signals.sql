-- The identity vault: one row per person, their key wrapped by the master key.
-- Erasure sets wrapped_key, identity and the notes to NULL (crypto-shredding).
CREATE TABLE people (
    person_id   uuid        PRIMARY KEY,
    wrapped_key bytea,
    identity    bytea,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    erased_at   timestamptz
);

ALTER TABLE intakes
    ADD COLUMN note         bytea,
    ADD COLUMN has_identity boolean NOT NULL DEFAULT false,
    ADD COLUMN signal_id    uuid;

-- What this service knows of consents (consent.* events): who may read a person's data.
CREATE TABLE consents (
    consent_id  uuid        PRIMARY KEY,
    person_id   uuid        NOT NULL,
    purposes    text[]      NOT NULL,
    recipients  text[]      NOT NULL,
    categories  text[]      NOT NULL,
    valid_until timestamptz NOT NULL,
    status      text        NOT NULL
);
CREATE INDEX consents_person ON consents (person_id);

-- Who read which person's personal data, when, under which consent.
CREATE TABLE access_log (
    id          bigserial   PRIMARY KEY,
    person_id   uuid        NOT NULL,
    org         text        NOT NULL,
    client_id   text        NOT NULL,
    consent_id  uuid,
    categories  text[]      NOT NULL,
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX access_log_person ON access_log (person_id, at);

-- Someone to reach, signalled by a relay of the network (a mayor, a shop, a sports club).
CREATE TABLE signals (
    id          uuid        PRIMARY KEY,
    org         text        NOT NULL,
    relay_kind  text        NOT NULL,
    relay_name  text        NOT NULL,
    commune     text,
    site        text,
    age_bracket text,
    needs       text[]      NOT NULL,
    hint        bytea,
    status      text        NOT NULL DEFAULT 'open',
    outcome     text,
    intake_id   uuid,
    created_at  timestamptz NOT NULL DEFAULT now(),
    closed_at   timestamptz
);
CREATE INDEX signals_org_status ON signals (org, status, created_at);
