-- The proof of signed consents (issue #11, point 5): the signature drawn on the screen or the
-- photo of the signed paper form, sealed with the person's key like the rest of the vault (so
-- erasing the person shreds it, in backups too), named by the SHA-256 of the image, which the
-- consent records. Erasure also deletes the rows.
CREATE TABLE evidence (
    person_id  uuid        NOT NULL,
    sha256     text        NOT NULL,
    kind       text        NOT NULL,
    media_type text        NOT NULL,
    size       integer     NOT NULL,
    sealed     bytea       NOT NULL,
    org        text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (person_id, sha256)
);
