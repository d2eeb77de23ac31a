-- The private checkpoint key is sealed under the master key (AES-256-GCM, `sealed_key`), the
-- public key kept beside it for /v1/audit/keys; a row an older version left in clear
-- (`private_key`) is sealed at the next start.
ALTER TABLE audit_keys ADD COLUMN sealed_key bytea, ADD COLUMN public_key bytea;
ALTER TABLE audit_keys ALTER COLUMN private_key DROP NOT NULL;
ALTER TABLE audit_keys ADD CONSTRAINT audit_keys_have_a_key
    CHECK (sealed_key IS NOT NULL OR private_key IS NOT NULL);
