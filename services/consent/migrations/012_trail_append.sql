-- A trail entry appended in one round trip (issue #12): the append lock, the head, the entry
-- (its canonical JSON written around the two values only known under the lock, `prev` and
-- `seq`, which sort in this order) and its leaf hash, in one statement. The lock is held
-- until the commit: with the head read and the insert in two statements, every consent held
-- it for one more round trip to its process, which waits for its event loop under load.
-- `parts` holds three byte strings per entry (services/consent/trail.py, entry_parts): the
-- entry is parts[1] || "<prev hex>" || parts[2] || <seq> || parts[3]. The version before
-- takes the same lock (trail_head_locked) and appends the same bytes, computed in Python.
CREATE FUNCTION trail_append(lock_key text, parts bytea[], person_ids uuid[])
RETURNS void LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    head bigint;
    prev bytea;
    entry bytea;
BEGIN
    IF coalesce(array_length(parts, 1), 0) <> 3 * coalesce(array_length(person_ids, 1), 0) THEN
        RAISE EXCEPTION 'trail_append: three parts per entry, % parts for % entries',
            array_length(parts, 1), array_length(person_ids, 1);
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext(lock_key));
    SELECT t.seq, t.leaf_hash INTO head, prev FROM consent.trail t ORDER BY t.seq DESC LIMIT 1;
    FOR i IN 1 .. coalesce(array_length(person_ids, 1), 0) LOOP
        head := coalesce(head + 1, 0);
        entry := parts[3 * i - 2]
            || convert_to('"' || coalesce(encode(prev, 'hex'), '') || '"', 'UTF8')
            || parts[3 * i - 1] || convert_to(head::text, 'UTF8') || parts[3 * i];
        prev := sha256('\x00'::bytea || entry);
        INSERT INTO consent.trail (seq, entry, leaf_hash, person_id)
            VALUES (head, entry, prev, person_ids[i]);
    END LOOP;
END $$;
