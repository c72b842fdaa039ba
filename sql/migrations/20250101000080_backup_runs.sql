-- Scheduled backups (PLINTH_BACKUP_SCHEDULE). Every sidecar computes the same schedule ticks; the
-- first to insert a tick's row runs that backup, so it runs once however many sidecars share the
-- database. The newest row is the last result that GET /health reports.

-- migrate:up
CREATE TABLE plinth.backup_runs (
  tick timestamptz PRIMARY KEY,
  claimed_by text NOT NULL,
  started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  finished_at timestamptz,
  ok boolean,
  -- Where the archive went (a file path or an s3:// URL); never a credential.
  location text,
  bytes bigint,
  error text
);
REVOKE ALL ON plinth.backup_runs FROM PUBLIC;

-- migrate:down
DROP TABLE plinth.backup_runs;
