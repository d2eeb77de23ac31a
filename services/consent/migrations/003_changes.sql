-- Every change of a consent, in order: granted, withdrawn (whole or in part), expired.
CREATE TABLE consent_changes (
    id           bigserial   PRIMARY KEY,
    consent_id   uuid        NOT NULL REFERENCES consents (id),
    kind         text        NOT NULL,
    purposes     text[]      NOT NULL,  -- what the change granted or took away
    recipients   text[]      NOT NULL,
    requested_by text,
    channel      text,
    org          text        NOT NULL,
    at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX consent_changes_consent ON consent_changes (consent_id, id);
CREATE INDEX consents_expiry ON consents (valid_until) WHERE status = 'active';
