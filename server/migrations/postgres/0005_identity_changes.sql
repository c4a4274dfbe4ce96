-- A counter bumped in every transaction that revokes a session or an API token, suspends or
-- changes an account, or changes a membership. Collectors poll it (one read a second per process)
-- and re-check their open websockets when it moves, so a revocation closes them within a second.
CREATE TABLE identity_changes (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    generation BIGINT NOT NULL
);
INSERT INTO identity_changes (id, generation) VALUES (1, 0);
