-- Issue 18: how long each instance's history (time travel) is kept and how many bytes it may take.
-- Site admins set them per instance; new instances get a week and 10 GiB.
ALTER TABLE instances ADD COLUMN history_days BIGINT NOT NULL DEFAULT 7;
ALTER TABLE instances ADD COLUMN history_quota_bytes BIGINT NOT NULL DEFAULT 10737418240;
