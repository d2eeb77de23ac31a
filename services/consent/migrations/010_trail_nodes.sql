-- The trail's Merkle tree kept (issue #12): the root of every perfect subtree of 2^10 leaves or
-- more, stored by the checkpointer as it closes them (services/consent/trail_store.py), so that
-- an inclusion or consistency proof reads a few dozen of these and at most two blocks of 1,024
-- leaf hashes, not the whole trail. `height` h, `idx` i: the leaves [i * 2^h, (i + 1) * 2^h).
CREATE TABLE IF NOT EXISTS trail_nodes (
    height smallint NOT NULL,
    idx    bigint   NOT NULL,
    hash   bytea    NOT NULL,
    PRIMARY KEY (height, idx)
);
