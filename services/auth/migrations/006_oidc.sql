-- Signing in with OpenID Connect (services/auth/oidc.py). The provider's identity (issuer and
-- `sub`) is bound to the account at its first sign-in there: another identity presenting the
-- same address is refused after, and one identity opens one account only.
ALTER TABLE users ADD COLUMN oidc_issuer text;
ALTER TABLE users ADD COLUMN oidc_subject text;
ALTER TABLE users ADD CONSTRAINT users_oidc_identity_whole
    CHECK ((oidc_issuer IS NULL) = (oidc_subject IS NULL));
CREATE UNIQUE INDEX users_oidc_identity ON users (oidc_issuer, oidc_subject)
    WHERE oidc_subject IS NOT NULL;

-- A sign-in under way at the provider (10 minutes): found again by the hash of its `state`,
-- bound to the browser that started it (the hash of a random value in an HttpOnly cookie),
-- used once. The nonce and the PKCE verifier never leave the server but to the provider.
CREATE TABLE oidc_flows (
    state_hash   bytea       PRIMARY KEY,
    browser_hash bytea       NOT NULL,
    nonce        text        NOT NULL,
    verifier     text        NOT NULL,
    suite        text        NOT NULL,
    expires_at   timestamptz NOT NULL
);
CREATE INDEX oidc_flows_expiry ON oidc_flows (expires_at);
