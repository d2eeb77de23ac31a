-- The relays of the network (issue #11, MiloMouv'): a mayor, an association, a shop that
-- signals young people to a mobile team from a personal link, without an account. The
-- coordination creates a relay for a mobile team (`org`, which receives its signals) and
-- hands its link over; only the link's keyed hash is kept (HMAC-SHA-256 under a key derived
-- from the master key, services/intake/relays.py). Revoking (`revoked_at`) is immediate.
CREATE TABLE relays (
    id          uuid        PRIMARY KEY,
    org         text        NOT NULL,
    kind        text        NOT NULL,
    name        text        NOT NULL,
    link_hash   bytea       NOT NULL UNIQUE,
    created_by  text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_by  text,
    revoked_at  timestamptz
);
CREATE INDEX relays_org ON relays (org, created_at);

-- Which relay sent a signal (none: posted through the API); its kind and name are the
-- relay's, copied when it signals.
ALTER TABLE signals ADD COLUMN relay_id uuid REFERENCES relays (id);
CREATE INDEX signals_relay ON signals (relay_id);
