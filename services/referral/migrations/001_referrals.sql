CREATE TABLE partners (
    id          text    PRIMARY KEY,
    name        text    NOT NULL,
    kind        text    NOT NULL,
    needs       text[]  NOT NULL,
    communes    text[]  NOT NULL,
    min_age     integer,
    max_age     integer,
    answer_days integer NOT NULL
);

CREATE TABLE referrals (
    id          uuid        PRIMARY KEY,
    person_id   uuid        NOT NULL,
    intake_id   uuid        NOT NULL UNIQUE,
    sender_org  text        NOT NULL,
    target      text        NOT NULL,
    purpose     text        NOT NULL,
    status      text        NOT NULL,
    consent_id  uuid,
    explanation jsonb       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX referrals_person_status ON referrals (person_id, status);

CREATE TABLE referral_history (
    id          bigserial   PRIMARY KEY,
    referral_id uuid        NOT NULL REFERENCES referrals (id),
    status      text        NOT NULL,
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text        NOT NULL,
    reason      text
);
CREATE INDEX referral_history_referral ON referral_history (referral_id, id);

-- What this service knows of consents (from consent.* events), to open the gate.
CREATE TABLE consents (
    consent_id  uuid        PRIMARY KEY,
    person_id   uuid        NOT NULL,
    purposes    text[]      NOT NULL,
    recipients  text[]      NOT NULL,
    valid_until timestamptz NOT NULL,
    status      text        NOT NULL
);
CREATE INDEX consents_person ON consents (person_id);
