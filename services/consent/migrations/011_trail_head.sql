-- The trail's head read under its append lock in one round trip (issue #12): the consent that
-- holds the lock no longer goes back to its process between taking it and reading the head,
-- so the lock is held for one round trip less. The version before takes the same lock by
-- hand, then reads the head: both still append one at a time. A plpgsql function's statements
-- each take a fresh snapshot (READ COMMITTED), so the head read after the lock is the last
-- entry committed.
CREATE FUNCTION trail_head_locked(lock_key text, OUT seq bigint, OUT leaf_hash bytea)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext(lock_key));
    SELECT t.seq, t.leaf_hash INTO seq, leaf_hash FROM consent.trail t ORDER BY t.seq DESC
        LIMIT 1;
END $$;
