-- Deployment-wide settings (installation id, generated secrets, …), one row per key.
-- Timestamps everywhere are milliseconds since the Unix epoch, UTC, so both backends compare them alike.
CREATE TABLE settings (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
