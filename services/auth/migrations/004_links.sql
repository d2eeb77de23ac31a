-- Magic links: the link itself is never kept (the notify service makes it when it sends an
-- email); a row is made when it is first opened, binding it to that device.
CREATE TABLE links (
    id             uuid        PRIMARY KEY,  -- the email's notification id
    referral_id    uuid        NOT NULL,
    org            text        NOT NULL,
    email          text        NOT NULL,
    device_hash    bytea       NOT NULL,
    first_opened   timestamptz NOT NULL DEFAULT now(),
    last_opened    timestamptz NOT NULL DEFAULT now(),
    opened         integer     NOT NULL DEFAULT 1,
    refused        integer     NOT NULL DEFAULT 0,  -- opened from another device
    revoked_at     timestamptz,
    revoked_why    text
);
CREATE INDEX links_referral ON links (referral_id);
