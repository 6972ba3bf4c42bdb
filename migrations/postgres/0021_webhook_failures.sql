-- `/metrics` counts the webhook deliveries given up: read in an index of those alone.
CREATE INDEX webhook_deliveries_failed ON webhook_deliveries (id) WHERE status = 'failed';
