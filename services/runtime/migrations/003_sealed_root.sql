-- The derivation root (services/runtime/sealing.py): the secret the keys of codes, cards, the
-- name index, links and the offline key pair are derived from, sealed under the master key.
-- It is the master key this schema first ran with, so a rotation of the master key re-seals
-- it and changes none of the codes and cards people hold.
CREATE TABLE sealed_root (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    sealed   bytea   NOT NULL
);
