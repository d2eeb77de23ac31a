CREATE TABLE clients (
    client_id   text        PRIMARY KEY,
    secret_hash text        NOT NULL,
    org         text        NOT NULL,
    name        text        NOT NULL,
    scopes      text[]      NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

-- Token signing keys. The newest unretired key signs; a retired key stays published in the
-- JWKS until the tokens it signed have expired.
CREATE TABLE signing_keys (
    kid         text        PRIMARY KEY,
    private_jwk jsonb       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    retired_at  timestamptz
);
