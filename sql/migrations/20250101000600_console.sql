-- What the web console asks the database beyond the REST API: the SQL editor's claims, each
-- table's policies and what every API role can reach, and the signing keys. Every function here
-- is SECURITY DEFINER and checks its caller itself (the service key, or an admin whose account
-- still is one), refusing with PT403, so the rule lives here and nowhere else. The schema is not
-- one PostgREST serves; the sidecar calls these as the caller.
-- Also: an admin may change an editor's app role (never an admin's, nor their own).

-- migrate:up
CREATE SCHEMA console;
REVOKE ALL ON SCHEMA console FROM PUBLIC;
GRANT USAGE ON SCHEMA console TO authenticated, service_role;

CREATE FUNCTION console.require_admin(p_what text) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = ''
AS $$
BEGIN
  IF NOT (auth.role() = 'service_role' OR auth.is_admin()) THEN
    RAISE EXCEPTION '% is for admins: it needs an admin''s token or the service key', p_what USING ERRCODE = 'PT403';
  END IF;
END
$$;

-- The claims the SQL editor runs a statement with: anon, service_role, or a chosen user as
-- authenticated (the claims that user's own token would carry; no token is minted).
CREATE FUNCTION console.sql_editor_claims(p_role text, p_user_id uuid) RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = ''
AS $$
DECLARE
  u auth.users;
BEGIN
  PERFORM console.require_admin('The SQL editor');
  IF p_role = 'anon' OR p_role = 'service_role' THEN
    RETURN jsonb_build_object('role', p_role);
  END IF;
  IF p_role IS DISTINCT FROM 'authenticated' THEN
    RAISE EXCEPTION 'Unknown role %', p_role USING ERRCODE = '22023', HINT = 'Use anon, authenticated or service_role';
  END IF;
  IF p_user_id IS NULL THEN
    RAISE EXCEPTION 'Running as authenticated needs a user' USING ERRCODE = '22023', HINT = 'Choose the user whose rows the statement should see';
  END IF;
  SELECT * INTO u FROM auth.users WHERE id = p_user_id;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'No user with id %', p_user_id USING ERRCODE = 'P0002';
  END IF;
  RETURN jsonb_build_object('role', 'authenticated', 'sub', u.id, 'email', u.email, 'app_role', u.app_role);
END
$$;

-- Every app table and view in a schema the API roles may use (internal schemas left out): whether RLS is on, its policies as
-- PostgreSQL holds them, and for each API role and command what the role reaches:
-- "all" (granted, and RLS is off or the role bypasses it), "policy" (granted, and a permissive
-- policy for that command and role exists), "none" (granted, RLS on, no policy: nothing),
-- "no grant".
CREATE FUNCTION console.policy_coverage()
RETURNS TABLE (schema_name text, table_name text, kind text, rls_enabled boolean, policies jsonb, coverage jsonb)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = ''
AS $$
BEGIN
  PERFORM console.require_admin('The policy overview');
  RETURN QUERY
    SELECT n.nspname::text, c.relname::text,
           CASE c.relkind WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' ELSE 'table' END,
           c.relrowsecurity,
           coalesce((SELECT jsonb_agg(jsonb_build_object(
                       'name', p.policyname, 'command', p.cmd, 'roles', p.roles, 'permissive', p.permissive,
                       'using', p.qual, 'with_check', p.with_check) ORDER BY p.policyname)
                       FROM pg_catalog.pg_policies p WHERE p.schemaname = n.nspname AND p.tablename = c.relname), '[]'::jsonb),
           (SELECT jsonb_object_agg(r.rolname, (
              SELECT jsonb_object_agg(lower(cmd.name),
                CASE
                  WHEN NOT pg_catalog.has_table_privilege(r.oid, c.oid, cmd.name) THEN 'no grant'
                  WHEN NOT c.relrowsecurity OR r.rolbypassrls THEN 'all'
                  WHEN EXISTS (SELECT FROM pg_catalog.pg_policies p
                                WHERE p.schemaname = n.nspname AND p.tablename = c.relname
                                  AND p.permissive = 'PERMISSIVE'
                                  AND (p.cmd = 'ALL' OR p.cmd = cmd.name)
                                  AND (p.roles && ARRAY[r.rolname, 'public']::name[])) THEN 'policy'
                  ELSE 'none'
                END)
              FROM (VALUES ('SELECT'), ('INSERT'), ('UPDATE'), ('DELETE')) AS cmd(name)))
              FROM pg_catalog.pg_roles r WHERE r.rolname IN ('anon', 'authenticated', 'service_role'))
      FROM pg_catalog.pg_class c
      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind IN ('r', 'p', 'v', 'm')
       AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'auth', 'storage', 'realtime', 'audit', 'console', 'fine_private')
       AND n.nspname NOT LIKE 'pg\_%'
       AND (pg_catalog.has_schema_privilege('anon', n.oid, 'USAGE') OR pg_catalog.has_schema_privilege('authenticated', n.oid, 'USAGE'))
     ORDER BY 1, 2;
END
$$;

-- The signing keys, oldest first, with the anon key each one signed (never the service key or a
-- private half).
CREATE FUNCTION console.signing_keys()
RETURNS TABLE (kid text, alg text, created_at timestamptz, newest boolean, anon_key text)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = ''
AS $$
BEGIN
  PERFORM console.require_admin('Managing signing keys');
  RETURN QUERY
    SELECT k.kid, k.alg, k.created_at, k.created_at = max(k.created_at) OVER (), k.anon_key
      FROM auth.signing_keys k ORDER BY k.created_at;
END
$$;

-- Stores a signing key the sidecar generated (only it holds private halves), and tells every
-- sidecar and PostgREST, as `plinth keys rotate` does.
CREATE FUNCTION console.add_signing_key(p_kid text, p_alg text, p_private_jwk jsonb, p_public_jwk jsonb, p_anon_key text, p_service_key text)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
BEGIN
  PERFORM console.require_admin('Managing signing keys');
  PERFORM pg_advisory_xact_lock(hashtext('plinth.signing_keys'));
  INSERT INTO auth.signing_keys (kid, alg, private_jwk, public_jwk, anon_key, service_key)
  VALUES (p_kid, p_alg, p_private_jwk, p_public_jwk, p_anon_key, p_service_key);
  PERFORM pg_notify('plinth_keys', p_kid), pg_notify('pgrst', 'reload config');
END
$$;

-- Removes an older signing key: every token and API key it signed stops working. Never the newest.
CREATE FUNCTION console.retire_signing_key(p_kid text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
DECLARE
  newest text;
BEGIN
  PERFORM console.require_admin('Managing signing keys');
  PERFORM pg_advisory_xact_lock(hashtext('plinth.signing_keys'));
  IF NOT EXISTS (SELECT FROM auth.signing_keys WHERE kid = p_kid) THEN
    RAISE EXCEPTION 'No signing key with kid %', p_kid USING ERRCODE = 'P0002';
  END IF;
  SELECT kid INTO newest FROM auth.signing_keys ORDER BY created_at DESC LIMIT 1;
  IF newest = p_kid THEN
    RAISE EXCEPTION 'The newest signing key cannot be retired' USING ERRCODE = 'PT409', HINT = 'Rotate first; then retire this one';
  END IF;
  DELETE FROM auth.signing_keys WHERE kid = p_kid;
  PERFORM pg_notify('plinth_keys', p_kid), pg_notify('pgrst', 'reload config');
END
$$;

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA console FROM PUBLIC;
GRANT EXECUTE ON FUNCTION console.sql_editor_claims(text, uuid), console.policy_coverage(), console.signing_keys(),
  console.add_signing_key(text, text, jsonb, jsonb, text, text), console.retire_signing_key(text)
  TO authenticated, service_role;

-- The service key, or an admin acting on an editor (auth.admin_target refuses admins and oneself).
CREATE OR REPLACE FUNCTION auth.set_app_role(p_user_id uuid, p_app_role text) RETURNS SETOF auth.user_profile
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
BEGIN
  PERFORM auth.require_user_admin('Changing an app role');
  IF auth.role() IS DISTINCT FROM 'service_role' THEN
    PERFORM auth.admin_target(p_user_id);
  END IF;
  RETURN QUERY
    UPDATE auth.users u SET app_role = p_app_role
     WHERE u.id = p_user_id
    RETURNING u.id, u.email, u.app_role, u.email_confirmed_at, u.last_sign_in_at, u.created_at, u.updated_at;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'No user with id %', p_user_id USING ERRCODE = 'P0002';
  END IF;
END
$$;

-- migrate:down
CREATE OR REPLACE FUNCTION auth.set_app_role(p_user_id uuid, p_app_role text) RETURNS SETOF auth.user_profile
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
BEGIN
  IF auth.role() IS DISTINCT FROM 'service_role' THEN
    RAISE EXCEPTION 'Only the service key may change a user''s app role'
      USING ERRCODE = 'PT403';
  END IF;
  RETURN QUERY
    UPDATE auth.users u SET app_role = p_app_role
     WHERE u.id = p_user_id
    RETURNING u.id, u.email, u.app_role, u.email_confirmed_at, u.last_sign_in_at, u.created_at, u.updated_at;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'No user with id %', p_user_id USING ERRCODE = 'P0002';
  END IF;
END
$$;
DROP SCHEMA console CASCADE;
