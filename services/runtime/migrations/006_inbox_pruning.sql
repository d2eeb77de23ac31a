-- Pruning (services/runtime/pruning.py) finds the consumers' old inbox rows without a scan:
-- the inbox had kept every event id each consumer ever handled.
CREATE INDEX inbox_processed ON inbox (processed_at);
