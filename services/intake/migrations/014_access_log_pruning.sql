-- Pruning (services/runtime/pruning.py) finds old access log entries without a scan.
CREATE INDEX access_log_at ON access_log (at);
