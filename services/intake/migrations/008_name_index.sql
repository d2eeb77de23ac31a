-- The search by name (issue #11, point 3): a keyed blind index over the vault. A person's
-- name stays sealed in `people`; here only HMAC-SHA-256 values of its normalised forms (the
-- first name, the last name, both in either order: services/intake/names.py) under a key
-- derived from the master key. A search is one equality on `term` (the primary key's index),
-- then the organisation's intakes of the few people found. Written with the identity, in the
-- same transaction; deleted on erasure. People sealed before this migration are indexed by
-- `relais intake reindex-names` (SQL cannot unseal them).
CREATE TABLE name_index (
    term      bytea NOT NULL,
    person_id uuid  NOT NULL,
    PRIMARY KEY (term, person_id)
);
CREATE INDEX name_index_person ON name_index (person_id);
