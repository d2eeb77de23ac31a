-- Pruning (services/runtime/pruning.py) finds old idempotency records without a scan.
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
