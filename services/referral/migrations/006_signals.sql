-- The signals of the network's relays, as the statistics count them (from the intake
-- service's signal_received and signal_closed events, in whichever order they arrive): the
-- relay's kind, when it came, where, and whether a contact answered it. No relay's name, no
-- hint: the funders see signals per relay kind only.
CREATE TABLE signals (
    signal_id   uuid        PRIMARY KEY,
    relay_kind  text        NOT NULL,
    site        text,
    received_at timestamptz,
    closed_at   timestamptz,
    outcome     text,
    intake_id   uuid
);
CREATE INDEX signals_received ON signals (received_at);
