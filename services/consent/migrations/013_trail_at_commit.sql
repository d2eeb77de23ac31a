-- A trail entry appended at the commit (issue #12): the transaction that records a consent
-- writes its entry's parts here, without a lock; a deferred constraint trigger appends them
-- (consent.trail_append: the append lock, the head, the entry) while the transaction commits,
-- and removes them. The lock, held until the commit, is no longer held across the round trip
-- between the append and the COMMIT, when the process that holds it waits for its event loop
-- under load: every consent of the territory waited behind it (pg_stat_statements: 27 ms a
-- flow in consent.trail_append, almost all of it the lock). The version before calls
-- consent.trail_append itself, under the same lock: both still append one at a time.
CREATE TABLE IF NOT EXISTS trail_pending (
    id          bigserial PRIMARY KEY,
    lock_key    text      NOT NULL,
    parts       bytea[]   NOT NULL,
    person_ids  uuid[]    NOT NULL
);

CREATE FUNCTION trail_append_pending() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM consent.trail_append(NEW.lock_key, NEW.parts, NEW.person_ids);
    DELETE FROM consent.trail_pending WHERE id = NEW.id;
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER trail_append_at_commit AFTER INSERT ON trail_pending
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION trail_append_pending();
