-- Rate limits (issue 14), counted per key and fixed window with one upsert, so that concurrent
-- requests cannot all pass a check made before any of them was recorded. Replaces the failed-login
-- rows, which were checked first and recorded after.
CREATE TABLE rate_counts (
    rate_key     TEXT NOT NULL,     -- "<rule>:<subject>", e.g. "login-account:ann@example.com"
    window_start BIGINT NOT NULL,   -- ms since the epoch, a multiple of the rule's window
    hits         BIGINT NOT NULL,
    PRIMARY KEY (rate_key, window_start)
);
CREATE INDEX rate_counts_window ON rate_counts (window_start);

DROP TABLE login_failures;
