-- The consent trail: append-only (enforced here, not only in code), hash-chained entries in
-- canonical JSON (RFC 8785), leaves of an RFC 6962 Merkle tree; signed checkpoints.
CREATE TABLE trail (
    seq         bigint      PRIMARY KEY,
    entry       bytea       NOT NULL,
    leaf_hash   bytea       NOT NULL,
    person_id   uuid,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX trail_person ON trail (person_id, seq);

CREATE TABLE checkpoints (
    size        bigint      PRIMARY KEY,
    root        bytea       NOT NULL,
    signed_at   timestamptz NOT NULL,
    kid         text        NOT NULL,
    signature   bytea       NOT NULL,
    frontier    bytea[]     NOT NULL,  -- to resume the tree without reading every leaf
    last_leaf   text        NOT NULL
);

CREATE TABLE audit_keys (
    kid         text        PRIMARY KEY,
    private_key bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the consent trail is append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER trail_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON trail
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
CREATE TRIGGER checkpoints_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
