-- The rate limits' buckets (services/runtime/ratelimit.py), shared by every instance of every
-- service so that a client spreading its calls over instances gets the same limit. GCRA: one
-- time per key, `tat` (the theoretical arrival time, in epoch seconds); the bucket is full
-- once it is past. Unlogged: a bucket lost in a crash or a failover is a full bucket, and no
-- write-ahead log is spent on counting requests.
CREATE SCHEMA IF NOT EXISTS relais_limits;
CREATE UNLOGGED TABLE IF NOT EXISTS relais_limits.buckets (
    key text             PRIMARY KEY,
    tat double precision NOT NULL
);

-- Take between `need` and `want` tokens from `k`'s bucket (`rate` a second, `burst` at most):
-- `granted` tokens (0 when fewer than `need` are there), else `wait`, the seconds until
-- `need` are.
CREATE OR REPLACE FUNCTION relais_limits.take(
    k text, need integer, want integer, rate double precision, burst integer,
    OUT granted integer, OUT wait double precision)
LANGUAGE plpgsql AS $$
DECLARE
    now_ double precision := extract(epoch FROM clock_timestamp());
    base double precision;
    free integer;
BEGIN
    -- one statement that makes the row or locks it as it is: none can be deleted in between
    INSERT INTO relais_limits.buckets AS b (key, tat) VALUES (k, now_)
        ON CONFLICT (key) DO UPDATE SET tat = b.tat
        RETURNING greatest(b.tat, now_) INTO base;
    free := floor((burst / rate - (base - now_)) * rate + 1e-9);
    IF free >= need THEN
        granted := least(want, free);
        wait := 0;
        UPDATE relais_limits.buckets SET tat = base + granted / rate WHERE key = k;
    ELSE
        granted := 0;
        wait := (base - now_) + (need - burst) / rate;
    END IF;
END $$;
