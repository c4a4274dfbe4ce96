-- The provisioning service: Scope instances, their lifecycle events, probe tokens.

CREATE TABLE instances (
    id                 TEXT PRIMARY KEY NOT NULL,   -- opaque, URL-safe
    org_id             TEXT NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    name               TEXT NOT NULL,
    -- created → provisioning → ready → active; suspended; deleting → deleted
    state              TEXT NOT NULL,
    -- where `resume` returns a suspended instance to (ready or active)
    resume_state       TEXT,
    shard              TEXT,                        -- collector shard it is placed on
    created_by         TEXT NOT NULL REFERENCES users (id),
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL,
    max_probes         BIGINT NOT NULL,
    max_report_bytes   BIGINT NOT NULL,
    max_reports_per_second BIGINT NOT NULL,
    refuse_reads       BOOLEAN NOT NULL DEFAULT FALSE,
    refuse_uploads     BOOLEAN NOT NULL DEFAULT FALSE,
    suspension_reason  TEXT,
    suspended_by_site  BOOLEAN NOT NULL DEFAULT FALSE,
    deleted_at         BIGINT,
    purge_after        BIGINT
);
CREATE INDEX instances_org ON instances (org_id);
CREATE INDEX instances_state ON instances (state);

CREATE TABLE instance_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id TEXT NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    at          BIGINT NOT NULL,
    from_state  TEXT,
    to_state    TEXT NOT NULL,
    actor_email TEXT,                               -- null: the reconciler
    detail      TEXT
);
CREATE INDEX instance_events_instance ON instance_events (instance_id, id);

CREATE TABLE probe_tokens (
    id          TEXT PRIMARY KEY NOT NULL,
    instance_id TEXT NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    token_hash  TEXT NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL,
    created_by  TEXT,
    expires_at  BIGINT,                             -- set when rotated: the grace period's end
    revoked_at  BIGINT
);
CREATE INDEX probe_tokens_instance ON probe_tokens (instance_id);
