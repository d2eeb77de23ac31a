-- The receipts given to people (issue #11, point 6): each carries a withdrawal code, kept
-- only as a keyed hash (HMAC-SHA-256 under a key derived from the master key), and a link
-- that is not kept at all (it is the receipt's id, sealed under another derived key). Either
-- opens the person's own page: their consents, which they may withdraw whole or in part.
CREATE TABLE receipts (
    id          uuid        PRIMARY KEY,
    person_id   uuid        NOT NULL,
    consent_id  uuid        NOT NULL REFERENCES consents (id),
    org         text        NOT NULL,
    code_hash   bytea       NOT NULL UNIQUE,
    created_by  text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
CREATE INDEX receipts_person ON receipts (person_id);

-- The directory's names of organisations, for the person's page (which has no session to
-- read the directory with): kept from the directory's events and from the counsellor's view.
CREATE TABLE organisations (
    id   text PRIMARY KEY,
    name text NOT NULL
);
