-- Issue 17: what members may do to an instance's nodes from the map. Controls (restart a container…)
-- are on unless an org admin turns them off; terminals (exec, attach, a host's shell) are off unless
-- one turns them on.
ALTER TABLE instances ADD COLUMN allow_controls BOOLEAN NOT NULL DEFAULT TRUE;
ALTER TABLE instances ADD COLUMN allow_terminals BOOLEAN NOT NULL DEFAULT FALSE;
