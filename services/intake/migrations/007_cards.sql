-- The person's card (issue #11, point 3): a short code given at a contact, typed at a later
-- one to attach it to the same person without asking for papers. Only the code's keyed hash
-- is kept (HMAC-SHA-256 under a key derived from the master key, services/intake/card.py);
-- the card says nothing about the person. A new card for the same person replaces the
-- earlier ones (revoked_at); erasing the person deletes their cards.
CREATE TABLE cards (
    id          uuid        PRIMARY KEY,
    person_id   uuid        NOT NULL,
    code_hash   bytea       NOT NULL UNIQUE,
    org         text        NOT NULL,
    created_by  text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
CREATE INDEX cards_person ON cards (person_id);
