-- The follow-up of a referral (the one `part_of` it, after a commission's decision): the sent
-- list asks it for every referral it shows, which without an index read the whole table each
-- time (bench/pages.py: 16 ms of the page's query at the demo's size, growing as its square).
CREATE INDEX referrals_part_of ON referrals (part_of, created_at) WHERE part_of IS NOT NULL;
