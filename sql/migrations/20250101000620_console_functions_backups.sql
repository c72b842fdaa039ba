-- The console's Functions and Backups pages. Backups: the runs in plinth.backup_runs (a private
-- table no API role may read) through console.backup_runs(), which, like the other console.*
-- functions, checks its caller itself: the service key or an admin whose account still is one.
-- Functions: the list comes from the functions admin API; the one thing only a sidecar knows,
-- which modules failed to load, is shown after console.require_admin() lets the caller through.
-- A run records its kind: the schedule's ticks are 'scheduled' (the default); 'manual' is for a
-- run asked for by hand, which the page tells apart.

-- migrate:up
ALTER TABLE plinth.backup_runs ADD COLUMN kind text NOT NULL DEFAULT 'scheduled' CHECK (kind IN ('scheduled', 'manual'));

-- Newest first; status is running (no result yet), ok or failed. Never the claiming host's name.
CREATE FUNCTION console.backup_runs(p_limit int DEFAULT 100)
RETURNS TABLE (started_at timestamptz, finished_at timestamptz, kind text, status text, bytes bigint, duration_ms double precision, location text, error text)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = ''
AS $$
BEGIN
  PERFORM console.require_admin('The backups page');
  RETURN QUERY
    SELECT r.started_at, r.finished_at, r.kind,
           CASE WHEN r.ok IS NULL THEN 'running' WHEN r.ok THEN 'ok' ELSE 'failed' END,
           r.bytes,
           (extract(epoch FROM r.finished_at - r.started_at) * 1000)::double precision,
           r.location, r.error
      FROM plinth.backup_runs r
     ORDER BY r.started_at DESC, r.tick DESC
     LIMIT least(greatest(coalesce(p_limit, 100), 1), 1000);
END
$$;

REVOKE ALL ON FUNCTION console.backup_runs(int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION console.backup_runs(int), console.require_admin(text) TO authenticated, service_role;

-- migrate:down
REVOKE EXECUTE ON FUNCTION console.require_admin(text) FROM authenticated, service_role;
DROP FUNCTION console.backup_runs(int);
ALTER TABLE plinth.backup_runs DROP COLUMN kind;
