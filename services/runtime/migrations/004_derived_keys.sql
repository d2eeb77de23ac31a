-- The derived keys (services/runtime/sealing.py): the keys of codes, cards, the name index,
-- links and the offline key pair, each derived from the master key the first time, then kept
-- sealed under it here, one row per use, shared by every service (so they agree), and sealed
-- again by `relais master-key rewrap`: a rotation changes none of them. They replace the
-- per-schema derivation root of 003, which held a master key itself.
CREATE SCHEMA IF NOT EXISTS relais_keys;
CREATE TABLE IF NOT EXISTS relais_keys.derived (
    info   text  PRIMARY KEY,
    sealed bytea NOT NULL
);
DROP TABLE IF EXISTS sealed_root;
