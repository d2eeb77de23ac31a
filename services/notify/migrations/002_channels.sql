-- #6: who is told what, through which channels; webhooks with their attempts; the inbox.
ALTER TABLE recipients
    ADD COLUMN counsellors text[]  NOT NULL DEFAULT '{}',
    ADD COLUMN channels    text[]  NOT NULL DEFAULT '{email,inbox}',
    ADD COLUMN muted       text[]  NOT NULL DEFAULT '{}',
    ADD COLUMN custom      boolean NOT NULL DEFAULT false;

CREATE TABLE webhook_endpoints (
    id          uuid        PRIMARY KEY,
    org         text        NOT NULL,
    url         text        NOT NULL,
    secret      text        NOT NULL,
    kinds       text[]      NOT NULL,
    active      boolean     NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_endpoints_org ON webhook_endpoints (org) WHERE active;

ALTER TABLE notifications DROP CONSTRAINT notifications_event_id_recipient_org_channel_key;
ALTER TABLE notifications
    ADD COLUMN kind         text        NOT NULL DEFAULT 'new_referral',
    ADD COLUMN sender_org   text,
    ADD COLUMN endpoint_id  uuid        REFERENCES webhook_endpoints (id),
    ADD COLUMN payload      jsonb,
    ADD COLUMN seq          bigserial,
    ADD COLUMN delivered_at timestamptz,
    ADD COLUMN failed_at    timestamptz;
ALTER TABLE notifications ALTER COLUMN address DROP NOT NULL;
-- One notification per (event, recipient, channel) and, for webhooks, per endpoint.
CREATE UNIQUE INDEX notifications_once ON notifications
    (event_id, recipient_org, channel, coalesce(endpoint_id, '00000000-0000-0000-0000-000000000000'));
CREATE INDEX notifications_inbox ON notifications (recipient_org, seq) WHERE channel = 'inbox';

CREATE TABLE deliveries (
    id              uuid        PRIMARY KEY,
    notification_id uuid        NOT NULL REFERENCES notifications (id),
    endpoint_id     uuid        NOT NULL REFERENCES webhook_endpoints (id),
    attempt         integer     NOT NULL,
    at              timestamptz NOT NULL DEFAULT now(),
    status_code     integer,
    error           text,
    duration_ms     integer     NOT NULL,
    outcome         text        NOT NULL  -- delivered, retry, dead
);
CREATE INDEX deliveries_endpoint ON deliveries (endpoint_id, at DESC);
