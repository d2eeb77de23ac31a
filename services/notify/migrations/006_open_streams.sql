-- The live inbox streams open now, in every instance (services/notify/live.py), so that a
-- client and its organisation hold at most RELAIS_SSE_MAX_PER_CLIENT and _PER_ORG streams
-- across the whole deployment. Each instance says every live.ALIVE_EVERY seconds that its
-- streams are still open (`seen`); a row not seen for live.STALE seconds (its instance died)
-- no longer counts. Unlogged: after a crash no stream is open anyway.
CREATE UNLOGGED TABLE IF NOT EXISTS open_streams (
    id        uuid        PRIMARY KEY,
    org       text        NOT NULL,
    client_id text        NOT NULL,
    page      boolean     NOT NULL,
    seen      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS open_streams_org ON open_streams (org);
