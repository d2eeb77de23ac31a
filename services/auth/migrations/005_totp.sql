-- The optional second factor (TOTP, RFC 6238). `totp_secret` is sealed under the master key
-- (services/auth/totp.py); it is set when the person starts enrolling and serves at sign-in
-- only once `totp_enabled_at` is set (a code typed right on the enrolment page).
-- `totp_last_step` is the time step of the last code accepted: a code serves once.
ALTER TABLE users ADD COLUMN totp_secret bytea;
ALTER TABLE users ADD COLUMN totp_enabled_at timestamptz;
ALTER TABLE users ADD COLUMN totp_last_step bigint;
ALTER TABLE users ADD CONSTRAINT users_totp_enabled_with_a_secret
    CHECK (totp_enabled_at IS NULL OR totp_secret IS NOT NULL);

-- A right password of an account with a second factor: the code is awaited (5 minutes) before
-- a session opens. The browser holds a random id in an HttpOnly, SameSite=Strict cookie; only
-- its hash is kept.
CREATE TABLE pending_logins (
    id_hash    bytea       PRIMARY KEY,
    user_id    uuid        NOT NULL REFERENCES users (id),
    suite      text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX pending_logins_user ON pending_logins (user_id);
