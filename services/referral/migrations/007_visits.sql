-- A returning person's new contact that joined the referral already open to the same partner
-- for the same purpose (issue #16): one hand-off per person, partner and purpose. The contact
-- finds its referral through this row (`GET /v1/referrals?intake_id=`); the referral's history
-- says the visit was recorded.
CREATE TABLE visits (
    intake_id   uuid        PRIMARY KEY,
    referral_id uuid        NOT NULL REFERENCES referrals (id),
    joined_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX visits_referral ON visits (referral_id);
