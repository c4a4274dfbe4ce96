-- The users service: accounts, sessions, email links, orgs, memberships, invites, API tokens,
-- login throttling, audit log, mail outbox. Ids are random hex; secrets are stored as SHA-256 hex.

CREATE TABLE users (
    id                TEXT PRIMARY KEY NOT NULL,
    email             TEXT NOT NULL UNIQUE,
    password_hash     TEXT NOT NULL,
    -- unverified → waitlisted → approved | rejected
    status            TEXT NOT NULL,
    rejection_reason  TEXT,
    is_admin          BOOLEAN NOT NULL DEFAULT FALSE,
    suspended_at      BIGINT,
    email_verified_at BIGINT,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);

CREATE TABLE sessions (
    id           TEXT PRIMARY KEY NOT NULL,
    token_hash   TEXT NOT NULL UNIQUE,  -- SHA-256 of the cookie value
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf_token   TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,       -- absolute expiry
    user_agent   TEXT,
    ip           TEXT,
    revoked_at   BIGINT
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE email_tokens (
    token_hash TEXT PRIMARY KEY NOT NULL,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose    TEXT NOT NULL,           -- verify | reset | login
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT
);
CREATE INDEX email_tokens_user ON email_tokens (user_id, purpose);

CREATE TABLE login_failures (
    throttle_key TEXT NOT NULL,         -- "account:<email>" or "ip:<address>"
    at           BIGINT NOT NULL
);
CREATE INDEX login_failures_key ON login_failures (throttle_key, at);

CREATE TABLE orgs (
    id          TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    personal_of TEXT UNIQUE REFERENCES users (id) ON DELETE SET NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE memberships (
    org_id     TEXT NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role       TEXT NOT NULL,           -- admin | editor | viewer
    created_at BIGINT NOT NULL,
    PRIMARY KEY (org_id, user_id)
);
CREATE INDEX memberships_user ON memberships (user_id);

CREATE TABLE invites (
    id          TEXT PRIMARY KEY NOT NULL,
    token_hash  TEXT NOT NULL UNIQUE,
    org_id      TEXT NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    email       TEXT NOT NULL,
    role        TEXT NOT NULL,
    invited_by  TEXT NOT NULL REFERENCES users (id),
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    accepted_at BIGINT,
    accepted_by TEXT REFERENCES users (id),
    revoked_at  BIGINT
);
CREATE INDEX invites_org ON invites (org_id);

CREATE TABLE api_tokens (
    id           TEXT PRIMARY KEY NOT NULL,
    token_hash   TEXT NOT NULL UNIQUE,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    org_id       TEXT NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    scope        TEXT NOT NULL,         -- read | write
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked_at   BIGINT
);
CREATE INDEX api_tokens_user ON api_tokens (user_id, org_id);

CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          BIGINT NOT NULL,
    action      TEXT NOT NULL,
    actor_id    TEXT,
    actor_email TEXT,
    org_id      TEXT,
    target      TEXT,
    ip          TEXT,
    detail      TEXT
);
CREATE INDEX audit_log_org ON audit_log (org_id, id);

CREATE TABLE outbox (
    id         TEXT PRIMARY KEY NOT NULL,
    to_email   TEXT NOT NULL,
    subject    TEXT NOT NULL,
    body       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    status     TEXT NOT NULL,           -- pending | sent | failed (gave up) | kept (no SMTP)
    attempts   BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL DEFAULT 0,
    sent_at    BIGINT,
    error      TEXT
);
CREATE INDEX outbox_created ON outbox (created_at);
