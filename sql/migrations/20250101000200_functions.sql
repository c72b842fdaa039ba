-- Cloud functions: the private `functions` schema. The sidecar (the owner connection) records
-- every deployed source, pins a rolled-back version, claims schedule ticks, keeps each function's
-- place in the realtime change log, and stores encrypted secrets. The API roles get nothing here
-- but the admin functions at the end, which decide in SQL who may read: the service key or an
-- admin. The schema is in the sidecar's list of private schemas, so PostgREST never serves it.

-- migrate:up
CREATE SCHEMA functions;
REVOKE ALL ON SCHEMA functions FROM PUBLIC;
GRANT USAGE ON SCHEMA functions TO authenticated, service_role;

-- One row per distinct source a function ran with; the source is kept so a rollback can run it again.
CREATE TABLE functions.versions (
  name text NOT NULL CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
  version int NOT NULL CHECK (version > 0),
  sha256 text NOT NULL,
  source text NOT NULL,
  -- The module's `config` export as the sidecar read it (triggers, secrets, hosts, service).
  config jsonb NOT NULL DEFAULT '{}',
  deployed_at timestamptz NOT NULL DEFAULT now(),
  deployed_by text,
  PRIMARY KEY (name, version)
);

-- A function run at an older version than its file (plinth functions rollback); a newer file
-- (another sha256) deploys a new version and removes the pin.
CREATE TABLE functions.pins (
  name text PRIMARY KEY,
  version int NOT NULL,
  pinned_at timestamptz NOT NULL DEFAULT now(),
  FOREIGN KEY (name, version) REFERENCES functions.versions (name, version) ON DELETE CASCADE
);

CREATE TABLE functions.invocations (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name text NOT NULL,
  version int,
  trigger text NOT NULL CHECK (trigger IN ('http', 'schedule', 'change')),
  status int NOT NULL,
  duration_ms double precision NOT NULL,
  error text,
  at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX invocations_name_at ON functions.invocations (name, at DESC);
CREATE INDEX invocations_at ON functions.invocations (at);

-- One row per function and tick: the sidecar whose insert succeeds runs it, the others skip it.
CREATE TABLE functions.schedule_runs (
  name text NOT NULL,
  tick timestamptz NOT NULL,
  claimed_by text NOT NULL,
  claimed_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (name, tick)
);

-- Each change-triggered function's place in realtime.changes (the last position handled), and
-- which sidecar holds it now: a lease, renewed while it works, taken over once it expires.
CREATE TABLE functions.change_cursors (
  name text PRIMARY KEY,
  position bigint NOT NULL,
  leased_by text,
  lease_until timestamptz
);

-- Changes a function kept failing on, after its retries; the cursor moved past them.
CREATE TABLE functions.failed_changes (
  name text NOT NULL,
  position bigint NOT NULL,
  attempts int NOT NULL,
  error text,
  event jsonb NOT NULL,
  failed_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (name, position)
);

-- AES-256-GCM: value = iv (12 bytes) || ciphertext || tag (16 bytes); the key never enters the database.
CREATE TABLE functions.secrets (
  name text PRIMARY KEY CHECK (name ~ '^[A-Z_][A-Z0-9_]{0,127}$' AND name NOT LIKE 'PLINTH\_%' AND name NOT LIKE 'DENO\_%'),
  value bytea NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);

REVOKE ALL ON ALL TABLES IN SCHEMA functions FROM PUBLIC, anon, authenticated, service_role;

-- Deploys and secret changes go to the activity log; a secret by name only.
CREATE FUNCTION functions.on_versions() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
BEGIN
  PERFORM audit.log('functions.deployed', NEW.name, jsonb_build_object('version', NEW.version, 'sha256', NEW.sha256, 'by', NEW.deployed_by));
  RETURN NULL;
END $$;
CREATE TRIGGER versions_audit AFTER INSERT ON functions.versions FOR EACH ROW EXECUTE FUNCTION functions.on_versions();

CREATE FUNCTION functions.on_pins() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
BEGIN
  PERFORM audit.log('functions.rolled_back', NEW.name, jsonb_build_object('version', NEW.version));
  RETURN NULL;
END $$;
CREATE TRIGGER pins_audit AFTER INSERT OR UPDATE ON functions.pins FOR EACH ROW EXECUTE FUNCTION functions.on_pins();

CREATE FUNCTION functions.on_secrets() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    PERFORM audit.log('functions.secret_unset', OLD.name);
  ELSE
    PERFORM audit.log('functions.secret_set', NEW.name);
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER secrets_audit AFTER INSERT OR UPDATE OR DELETE ON functions.secrets FOR EACH ROW EXECUTE FUNCTION functions.on_secrets();

-- The admin API's one gate: the service key, or a signed-in user who is an admin now.
CREATE FUNCTION functions.assert_admin() RETURNS void
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = ''
AS $$
BEGIN
  IF auth.role() IS DISTINCT FROM 'service_role' AND NOT coalesce(auth.is_admin(), false) THEN
    RAISE EXCEPTION 'only the service key or an admin may manage functions' USING ERRCODE = '42501';
  END IF;
END $$;

-- Every function with its current version, triggers and last run.
CREATE FUNCTION functions.admin_list() RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = ''
AS $$
BEGIN
  PERFORM functions.assert_admin();
  RETURN coalesce((
    SELECT jsonb_agg(jsonb_build_object(
      'name', v.name,
      'version', coalesce(p.version, v.version),
      'latest_version', v.version,
      'pinned', p.version IS NOT NULL,
      'sha256', cur.sha256,
      'deployed_at', cur.deployed_at,
      'triggers', jsonb_strip_nulls(jsonb_build_object('http', true, 'schedule', cur.config -> 'schedule', 'on', cur.config -> 'on')),
      'secrets', coalesce(cur.config -> 'secrets', '[]'),
      'last_run', (SELECT jsonb_build_object('trigger', i.trigger, 'status', i.status, 'duration_ms', i.duration_ms, 'error', i.error, 'at', i.at)
                   FROM functions.invocations AS i WHERE i.name = v.name ORDER BY i.at DESC LIMIT 1)
    ) ORDER BY v.name)
    FROM (SELECT DISTINCT ON (name) name, version FROM functions.versions ORDER BY name, version DESC) AS v
    LEFT JOIN functions.pins AS p ON p.name = v.name
    JOIN functions.versions AS cur ON cur.name = v.name AND cur.version = coalesce(p.version, v.version)
  ), '[]');
END $$;

CREATE FUNCTION functions.admin_versions(p_name text) RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = ''
AS $$
BEGIN
  PERFORM functions.assert_admin();
  RETURN coalesce((SELECT jsonb_agg(jsonb_build_object('version', version, 'sha256', sha256, 'deployed_at', deployed_at) ORDER BY version DESC)
                   FROM functions.versions WHERE name = p_name), '[]');
END $$;

CREATE FUNCTION functions.admin_invocations(p_name text, p_limit int) RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = ''
AS $$
BEGIN
  PERFORM functions.assert_admin();
  RETURN coalesce((SELECT jsonb_agg(r) FROM (
    SELECT version, trigger, status, duration_ms, error, at FROM functions.invocations
    WHERE name = p_name ORDER BY at DESC, id DESC LIMIT least(greatest(p_limit, 1), 1000)) AS r), '[]');
END $$;

-- Pins an earlier version; the sidecars are told and switch without a restart.
CREATE FUNCTION functions.admin_rollback(p_name text, p_version int) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
BEGIN
  PERFORM functions.assert_admin();
  IF NOT EXISTS (SELECT FROM functions.versions WHERE name = p_name AND version = p_version) THEN
    RAISE EXCEPTION 'function % has no version %', p_name, p_version USING ERRCODE = 'P0002';
  END IF;
  INSERT INTO functions.pins (name, version) VALUES (p_name, p_version)
  ON CONFLICT (name) DO UPDATE SET version = excluded.version, pinned_at = now();
  PERFORM pg_notify('plinth_functions', p_name);
END $$;

REVOKE ALL ON FUNCTION functions.assert_admin(), functions.admin_list(), functions.admin_versions(text),
  functions.admin_invocations(text, int), functions.admin_rollback(text, int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION functions.admin_list(), functions.admin_versions(text),
  functions.admin_invocations(text, int), functions.admin_rollback(text, int) TO authenticated, service_role;

-- migrate:down
DROP SCHEMA functions CASCADE;
