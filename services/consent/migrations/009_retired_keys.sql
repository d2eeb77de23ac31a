-- A checkpoint key can be retired (`relais audit rotate-key`): its private key is destroyed,
-- its public key stays published at /v1/audit/keys so that what it signed still verifies.
ALTER TABLE audit_keys ADD COLUMN retired_at timestamptz;
ALTER TABLE audit_keys DROP CONSTRAINT audit_keys_have_a_key;
ALTER TABLE audit_keys ADD CONSTRAINT audit_keys_have_a_key
    CHECK (sealed_key IS NOT NULL OR private_key IS NOT NULL
           OR (retired_at IS NOT NULL AND public_key IS NOT NULL));
