-- The audit trail: one row per API request (written in batches by the sidecar) and an activity
-- log of schema, auth, key, file, migration and backup events. Row changes are caught by
-- triggers, so every path that makes them (API, sidecar, psql) is recorded the same way.
-- Admins and the service role read both through the views public.audit_requests and
-- public.audit_activity; RLS keeps every other caller out.

-- migrate:up
CREATE SCHEMA audit;
REVOKE ALL ON SCHEMA audit FROM PUBLIC;
GRANT USAGE ON SCHEMA audit TO authenticated, service_role;

CREATE TABLE audit.requests (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  at timestamptz NOT NULL,
  request_id text NOT NULL,
  user_id uuid,
  role text,
  app_role text,
  client_addr text,
  kind text NOT NULL,
  method text NOT NULL,
  path text NOT NULL,
  -- With tokens, keys, passwords and signatures replaced by [redacted] before it is written.
  query text,
  status int NOT NULL,
  duration_ms double precision NOT NULL,
  rows bigint,
  bytes_in bigint,
  bytes_out bigint
);
CREATE INDEX requests_at_idx ON audit.requests (at);
CREATE INDEX requests_user_at_idx ON audit.requests (user_id, at);

CREATE TABLE audit.activity (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  at timestamptz NOT NULL DEFAULT clock_timestamp(),
  -- Who: the account, when one acted (or is the subject of its own sign-in), and the role it acted as.
  actor_id uuid,
  actor_role text,
  action text NOT NULL,
  target text,
  -- Before/after of small values; never a secret.
  details jsonb
);
CREATE INDEX activity_at_idx ON audit.activity (at);
CREATE INDEX activity_actor_at_idx ON audit.activity (actor_id, at);

ALTER TABLE audit.requests ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit.activity ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON audit.requests, audit.activity FROM PUBLIC;
GRANT SELECT ON audit.requests, audit.activity TO authenticated, service_role;
-- service_role bypasses RLS; of the signed-in, only a current admin reads anything.
CREATE POLICY requests_admin ON audit.requests FOR SELECT TO authenticated USING ((SELECT auth.is_admin()));
CREATE POLICY activity_admin ON audit.activity FOR SELECT TO authenticated USING ((SELECT auth.is_admin()));

CREATE VIEW public.audit_requests WITH (security_invoker = true) AS
  SELECT id, at, request_id, user_id, role, app_role, client_addr, kind, method, path, query, status, duration_ms, rows, bytes_in, bytes_out
  FROM audit.requests;
CREATE VIEW public.audit_activity WITH (security_invoker = true) AS
  SELECT id, at, actor_id, actor_role, action, target, details FROM audit.activity;
REVOKE ALL ON public.audit_requests, public.audit_activity FROM PUBLIC, anon;
GRANT SELECT ON public.audit_requests, public.audit_activity TO authenticated, service_role;

-- The acting account: the caller's token when there is one (PostgREST, asCaller), else what the
-- sidecar named for this transaction (plinth.actor), else null (the operator, a migration).
CREATE FUNCTION audit.actor() RETURNS uuid
LANGUAGE sql STABLE SET search_path = ''
AS $$ SELECT coalesce(auth.uid(), nullif(current_setting('plinth.actor', true), '')::uuid) $$;

CREATE FUNCTION audit.actor_role() RETURNS text
LANGUAGE sql STABLE SET search_path = ''
AS $$ SELECT coalesce(nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role', session_user::text) $$;

CREATE FUNCTION audit.log(p_action text, p_target text, p_details jsonb DEFAULT NULL, p_actor uuid DEFAULT NULL) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = ''
AS $$
  INSERT INTO audit.activity (actor_id, actor_role, action, target, details)
  VALUES (coalesce(p_actor, audit.actor()), audit.actor_role(), p_action, p_target, p_details)
$$;
REVOKE ALL ON FUNCTION audit.log(text, text, jsonb, uuid) FROM PUBLIC;

CREATE FUNCTION audit.on_users() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    PERFORM audit.log('auth.sign_up', NEW.email, jsonb_build_object('app_role', NEW.app_role), coalesce(audit.actor(), NEW.id));
  ELSIF TG_OP = 'DELETE' THEN
    PERFORM audit.log('auth.user_deleted', OLD.email, jsonb_build_object('user_id', OLD.id));
  ELSE
    IF NEW.password_hash IS DISTINCT FROM OLD.password_hash THEN
      PERFORM audit.log('auth.password_changed', NEW.email, jsonb_build_object('user_id', NEW.id), coalesce(audit.actor(), NEW.id));
    END IF;
    IF NEW.app_role IS DISTINCT FROM OLD.app_role THEN
      PERFORM audit.log('auth.role_changed', NEW.email, jsonb_build_object('user_id', NEW.id, 'before', OLD.app_role, 'after', NEW.app_role));
    END IF;
    IF NEW.email IS DISTINCT FROM OLD.email THEN
      PERFORM audit.log('auth.email_changed', NEW.email, jsonb_build_object('user_id', NEW.id, 'before', OLD.email, 'after', NEW.email));
    END IF;
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER users_audit AFTER INSERT OR UPDATE OR DELETE ON auth.users FOR EACH ROW EXECUTE FUNCTION audit.on_users();

CREATE FUNCTION audit.on_sessions() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    PERFORM audit.log('auth.sign_in', NEW.user_id::text, jsonb_build_object('method', NEW.method, 'session_id', NEW.id), NEW.user_id);
  ELSIF NEW.revoked_at IS NOT NULL AND OLD.revoked_at IS NULL THEN
    PERFORM audit.log(CASE NEW.revoked_reason WHEN 'logout' THEN 'auth.logout' WHEN 'reuse' THEN 'auth.refresh_token_reuse' ELSE 'auth.session_ended' END,
      NEW.user_id::text, jsonb_build_object('session_id', NEW.id, 'reason', NEW.revoked_reason), NEW.user_id);
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER sessions_audit AFTER INSERT OR UPDATE ON auth.sessions FOR EACH ROW EXECUTE FUNCTION audit.on_sessions();

CREATE FUNCTION audit.on_one_time_tokens() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    PERFORM audit.log('auth.magic_link_sent', NEW.user_id::text, NULL, NEW.user_id);
  ELSIF NEW.used_at IS NOT NULL AND OLD.used_at IS NULL THEN
    PERFORM audit.log('auth.magic_link_used', NEW.user_id::text, NULL, NEW.user_id);
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER one_time_tokens_audit AFTER INSERT OR UPDATE ON auth.one_time_tokens FOR EACH ROW EXECUTE FUNCTION audit.on_one_time_tokens();

CREATE FUNCTION audit.on_signing_keys() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    PERFORM audit.log('keys.added', NEW.kid, jsonb_build_object('alg', NEW.alg));
  ELSE
    PERFORM audit.log('keys.retired', OLD.kid, jsonb_build_object('alg', OLD.alg));
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER signing_keys_audit AFTER INSERT OR DELETE ON auth.signing_keys FOR EACH ROW EXECUTE FUNCTION audit.on_signing_keys();

CREATE FUNCTION audit.on_files() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    PERFORM audit.log('file.stored', NEW.path, jsonb_build_object('owner_id', NEW.owner_id, 'size', NEW.size, 'sha256', NEW.sha256));
  ELSIF TG_OP = 'DELETE' THEN
    PERFORM audit.log('file.deleted', OLD.path, jsonb_build_object('owner_id', OLD.owner_id, 'size', OLD.size, 'sha256', OLD.sha256));
  ELSIF NEW.sha256 IS DISTINCT FROM OLD.sha256 OR NEW.size IS DISTINCT FROM OLD.size THEN
    PERFORM audit.log('file.overwritten', NEW.path, jsonb_build_object('owner_id', NEW.owner_id,
      'before', jsonb_build_object('size', OLD.size, 'sha256', OLD.sha256), 'after', jsonb_build_object('size', NEW.size, 'sha256', NEW.sha256)));
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER files_audit AFTER INSERT OR UPDATE OR DELETE ON public.files FOR EACH ROW EXECUTE FUNCTION audit.on_files();

CREATE FUNCTION audit.on_migrations() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN PERFORM audit.log('migration.applied', NEW.version);
  ELSE PERFORM audit.log('migration.rolled_back', OLD.version);
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER schema_migrations_audit AFTER INSERT OR DELETE ON plinth.schema_migrations FOR EACH ROW EXECUTE FUNCTION audit.on_migrations();

CREATE FUNCTION audit.on_backup_runs() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
BEGIN
  IF NEW.finished_at IS NOT NULL AND OLD.finished_at IS NULL THEN
    PERFORM audit.log(CASE WHEN NEW.ok THEN 'backup.done' ELSE 'backup.failed' END, NEW.location,
      jsonb_build_object('bytes', NEW.bytes, 'tick', NEW.tick, 'by', NEW.claimed_by));
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER backup_runs_audit AFTER UPDATE ON plinth.backup_runs FOR EACH ROW EXECUTE FUNCTION audit.on_backup_runs();

-- Schema changes (tables, columns, policies, grants, functions), from migrations or anyone else.
-- A failure here must never fail the DDL it records.
CREATE FUNCTION audit.on_ddl() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
DECLARE r record;
BEGIN
  FOR r IN SELECT * FROM pg_catalog.pg_event_trigger_ddl_commands() LOOP
    IF r.schema_name IS NULL OR (r.schema_name NOT LIKE 'pg_temp%' AND r.schema_name <> 'audit') THEN
      PERFORM audit.log('schema.' || lower(replace(r.command_tag, ' ', '_')), r.object_identity, jsonb_build_object('object_type', r.object_type));
    END IF;
  END LOOP;
EXCEPTION WHEN OTHERS THEN
  RAISE WARNING 'audit: schema change not recorded: %', SQLERRM;
END $$;

CREATE FUNCTION audit.on_drop() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
DECLARE r record;
BEGIN
  FOR r IN SELECT * FROM pg_catalog.pg_event_trigger_dropped_objects() WHERE original AND NOT is_temporary LOOP
    IF r.schema_name IS NULL OR r.schema_name <> 'audit' THEN
      PERFORM audit.log('schema.drop_' || replace(r.object_type, ' ', '_'), r.object_identity, NULL);
    END IF;
  END LOOP;
EXCEPTION WHEN OTHERS THEN
  RAISE WARNING 'audit: schema change not recorded: %', SQLERRM;
END $$;

-- Event triggers need a superuser: the embedded database's owner is one; with DATABASE_URL it
-- may not be, and then schema changes go unrecorded (everything else is still logged).
DO $$
BEGIN
  IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
    CREATE EVENT TRIGGER audit_ddl ON ddl_command_end EXECUTE FUNCTION audit.on_ddl();
    CREATE EVENT TRIGGER audit_drop ON sql_drop EXECUTE FUNCTION audit.on_drop();
  ELSE
    RAISE NOTICE 'audit: not a superuser, schema changes will not be recorded';
  END IF;
END $$;

-- Deletes rows older than p_days, at most p_batch of each table; returns how many went.
CREATE FUNCTION audit.prune(p_days int, p_batch int) RETURNS bigint
LANGUAGE plpgsql SET search_path = ''
AS $$
DECLARE n bigint; m bigint;
BEGIN
  DELETE FROM audit.requests WHERE id IN (SELECT id FROM audit.requests WHERE at < now() - make_interval(days => p_days) ORDER BY at LIMIT p_batch);
  GET DIAGNOSTICS n = ROW_COUNT;
  DELETE FROM audit.activity WHERE id IN (SELECT id FROM audit.activity WHERE at < now() - make_interval(days => p_days) ORDER BY at LIMIT p_batch);
  GET DIAGNOSTICS m = ROW_COUNT;
  RETURN n + m;
END $$;
REVOKE ALL ON FUNCTION audit.prune(int, int) FROM PUBLIC;

-- migrate:down
DROP EVENT TRIGGER IF EXISTS audit_ddl;
DROP EVENT TRIGGER IF EXISTS audit_drop;
DROP TRIGGER backup_runs_audit ON plinth.backup_runs;
DROP TRIGGER schema_migrations_audit ON plinth.schema_migrations;
DROP TRIGGER files_audit ON public.files;
DROP TRIGGER signing_keys_audit ON auth.signing_keys;
DROP TRIGGER one_time_tokens_audit ON auth.one_time_tokens;
DROP TRIGGER sessions_audit ON auth.sessions;
DROP TRIGGER users_audit ON auth.users;
DROP VIEW public.audit_requests, public.audit_activity;
DROP SCHEMA audit CASCADE;
