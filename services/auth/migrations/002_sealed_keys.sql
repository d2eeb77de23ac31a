-- The private signing key is sealed under the master key (AES-256-GCM, `sealed_jwk`); a row
-- an older version left in clear (`private_jwk`) is sealed at the next start.
ALTER TABLE signing_keys ADD COLUMN sealed_jwk bytea;
ALTER TABLE signing_keys ALTER COLUMN private_jwk DROP NOT NULL;
ALTER TABLE signing_keys ADD CONSTRAINT signing_keys_have_a_key
    CHECK (sealed_jwk IS NOT NULL OR private_jwk IS NOT NULL);
