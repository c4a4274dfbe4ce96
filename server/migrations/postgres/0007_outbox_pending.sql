-- The mailer counts what waits for delivery on every pass; sent mail stays in the table.
CREATE INDEX outbox_pending ON outbox (status, next_attempt_at);
