-- Pruning (services/runtime/pruning.py) finds old notifications and delivery attempts
-- without a scan.
CREATE INDEX notifications_created ON notifications (created_at);
CREATE INDEX deliveries_at ON deliveries (at);
