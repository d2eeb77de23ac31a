-- The partners' load (services/referral/store.py `_PARTNERS`: the referrals each is following
-- now), counted at every routing: an index of the active referrals alone, so that the count
-- reads those, not every referral a partner ever received (millions after a few years). Its
-- predicate is the store's ACTIVE_STATUSES, written out: tests/integration/test_hot_queries.py
-- fails if they part.
CREATE INDEX IF NOT EXISTS referrals_active_by_target ON referrals (target)
    WHERE status IN ('accepted', 'in_progress', 'on_hold', 'received', 'requested');
