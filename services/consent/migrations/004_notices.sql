-- The information notices read or shown to people; a consent refers to one by its hash.
CREATE TABLE notices (
    version    text        PRIMARY KEY,
    language   text        NOT NULL,
    text       text        NOT NULL,
    hash       bytea       NOT NULL,
    org        text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE consents ADD COLUMN notice_hash bytea;
