-- Pruning (services/runtime/pruning.py) finds the consumers' old inbox rows without a scan:
-- the inbox had kept every event id each consumer ever handled, so it may be large: build the
-- index by hand first, CONCURRENTLY, in each service's schema (docs/operations.md, "Expand"),
-- and this is a no-op there.
CREATE INDEX IF NOT EXISTS inbox_processed ON inbox (processed_at);
