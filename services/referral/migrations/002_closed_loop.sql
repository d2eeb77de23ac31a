-- The closed loop (#5): any number of referrals per intake (routed, by hand, after a
-- commission decision), who did what, deadlines, capacity, the commission, and the
-- intakes the statistics count.
ALTER TABLE referrals DROP CONSTRAINT referrals_intake_id_key;
ALTER TABLE referrals
    ADD COLUMN part_of       uuid REFERENCES referrals (id),
    ADD COLUMN origin        text        NOT NULL DEFAULT 'routing',
    ADD COLUMN requested_at  timestamptz,
    ADD COLUMN due_at        timestamptz,
    ADD COLUMN answered_at   timestamptz,
    ADD COLUMN reject_reason text,
    ADD COLUMN outcome       text,
    ADD COLUMN stopped_at    timestamptz;
CREATE INDEX referrals_intake ON referrals (intake_id);
CREATE INDEX referrals_target ON referrals (target, created_at DESC, id);
CREATE INDEX referrals_sender ON referrals (sender_org, created_at DESC, id);

ALTER TABLE referral_history
    ADD COLUMN from_status text,
    ADD COLUMN org         text,
    ADD COLUMN detail      jsonb;

ALTER TABLE partners
    ADD COLUMN open_places  integer,
    ADD COLUMN waiting_list boolean NOT NULL DEFAULT false,
    ADD COLUMN capacity_at  timestamptz;

ALTER TABLE consents
    ADD COLUMN categories         text[] NOT NULL DEFAULT '{}',
    ADD COLUMN granted_purposes   text[],
    ADD COLUMN granted_recipients text[];

-- Reminders, escalation and expiry: stored, so that they survive restarts.
CREATE TABLE timers (
    referral_id uuid        NOT NULL REFERENCES referrals (id),
    kind        text        NOT NULL,
    due_at      timestamptz NOT NULL,
    fired_at    timestamptz,
    PRIMARY KEY (referral_id, kind)
);
CREATE INDEX timers_due ON timers (due_at) WHERE fired_at IS NULL;

CREATE TABLE commission_sessions (
    id         uuid        PRIMARY KEY,
    commission text        NOT NULL,
    held_on    date        NOT NULL,
    members    text[]      NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE commission_agenda (
    session_id  uuid        NOT NULL REFERENCES commission_sessions (id),
    referral_id uuid        NOT NULL REFERENCES referrals (id),
    decision    text,
    partner     text,
    text        text,
    follow_up   uuid        REFERENCES referrals (id),
    decided_at  timestamptz,
    PRIMARY KEY (session_id, referral_id)
);

-- What the statistics count (from intake.recorded: no personal data).
CREATE TABLE intakes (
    intake_id    uuid        PRIMARY KEY,
    person_id    uuid        NOT NULL,
    org          text        NOT NULL,
    site         text        NOT NULL,
    permanence   text,
    contacted_at timestamptz NOT NULL,
    needs        text[]      NOT NULL,
    flags        text[]      NOT NULL,
    age_bracket  text,
    commune      text,
    gender       text,
    visit_number integer     NOT NULL
);
CREATE INDEX intakes_contacted ON intakes (contacted_at);

-- An organisation dropped from the directory stays for the referrals it has, but is no
-- longer a candidate.
ALTER TABLE partners ADD COLUMN active boolean NOT NULL DEFAULT true;
