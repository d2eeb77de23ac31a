CREATE TABLE recipients (
    org   text PRIMARY KEY,
    name  text NOT NULL,
    email text NOT NULL
);

CREATE TABLE notifications (
    id              uuid        PRIMARY KEY,
    event_id        text        NOT NULL,
    referral_id     uuid        NOT NULL,
    person_id       uuid        NOT NULL,
    recipient_org   text        NOT NULL,
    channel         text        NOT NULL,
    address         text        NOT NULL,
    subject         text        NOT NULL,
    body            text        NOT NULL,
    status          text        NOT NULL DEFAULT 'pending',
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    message_id      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz,
    UNIQUE (event_id, recipient_org, channel)
);
CREATE INDEX notifications_pending ON notifications (next_attempt_at) WHERE status = 'pending';
CREATE INDEX notifications_referral ON notifications (referral_id);
