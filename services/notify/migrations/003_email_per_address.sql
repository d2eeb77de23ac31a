-- One email per address (each carries its own magic link): one notification per (event,
-- recipient, channel), per webhook endpoint, and per email address.
DROP INDEX notifications_once;
CREATE UNIQUE INDEX notifications_once ON notifications
    (event_id, recipient_org, channel,
     coalesce(endpoint_id, '00000000-0000-0000-0000-000000000000'),
     (CASE WHEN channel = 'email' THEN lower(address) ELSE '' END));
