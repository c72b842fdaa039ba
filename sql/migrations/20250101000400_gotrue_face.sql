-- What the GoTrue-shaped routes (/auth/v1, for supabase-js) need beyond Plinth's own accounts:
-- user metadata the user may edit, recovery sessions (a reset link exchanged for a session, as
-- GoTrue's verify does), a password change that keeps the session that made it, and the admin
-- operations on one user. The rules stay those of the account functions: the same callers are
-- refused with the same SQLSTATEs.

-- migrate:up
-- GoTrue's user_metadata: free-form profile data the user (or an admin) writes; never trusted for
-- access decisions, since the user controls it.
ALTER TABLE auth.users ADD COLUMN user_metadata jsonb NOT NULL DEFAULT '{}'::jsonb
  CHECK (jsonb_typeof(user_metadata) = 'object' AND pg_column_size(user_metadata) <= 16384);

ALTER TABLE auth.sessions DROP CONSTRAINT sessions_method_check;
ALTER TABLE auth.sessions ADD CONSTRAINT sessions_method_check
  CHECK (method IN ('password', 'magic_link', 'signup', 'invite', 'confirm_email', 'recovery'));

-- A credential change ends every session of the user but the one named in the transaction's
-- plinth.keep_session: a user who changes their own password from a signed-in session keeps it
-- (its token proved who they are); every other holder of a refresh token is signed out.
CREATE OR REPLACE FUNCTION auth.end_sessions_on_credential_change() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
BEGIN
  UPDATE auth.sessions SET revoked_at = now(), revoked_reason = 'credentials'
   WHERE user_id = NEW.id AND revoked_at IS NULL
     AND id IS DISTINCT FROM nullif(current_setting('plinth.keep_session', true), '')::uuid;
  RETURN NULL;
END
$$;

-- GoTrue's merge: top-level keys of p_patch replace the stored ones; a key set to null is removed.
CREATE FUNCTION auth.merge_metadata(p_stored jsonb, p_patch jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE SET search_path = ''
AS $$
  SELECT (p_stored || coalesce(p_patch, '{}'::jsonb))
         - coalesce((SELECT array_agg(key) FROM jsonb_each(coalesce(p_patch, '{}'::jsonb)) WHERE value = 'null'::jsonb), '{}'::text[])
$$;

-- The caller updates their own user_metadata, while the session their token names is live.
CREATE FUNCTION auth.update_my_metadata(p_patch jsonb) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
DECLARE
  merged jsonb;
BEGIN
  IF auth.role() IS DISTINCT FROM 'authenticated' OR auth.uid() IS NULL THEN
    RAISE EXCEPTION 'This needs a user''s access token, not an API key' USING ERRCODE = 'PT403';
  END IF;
  IF jsonb_typeof(p_patch) IS DISTINCT FROM 'object' THEN
    RAISE EXCEPTION 'user metadata must be a JSON object' USING ERRCODE = '22023';
  END IF;
  UPDATE auth.users u SET user_metadata = auth.merge_metadata(u.user_metadata, p_patch)
   WHERE u.id = auth.uid()
     AND NOT EXISTS (SELECT FROM auth.sessions s
                      WHERE s.id = nullif(auth.jwt() ->> 'session_id', '')::uuid AND s.revoked_at IS NOT NULL)
  RETURNING u.user_metadata INTO merged;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'This session has ended or its account no longer exists' USING ERRCODE = 'PT401';
  END IF;
  RETURN merged;
END
$$;

-- Signs the caller out everywhere but the session their token names (GoTrue's scope "others").
CREATE FUNCTION auth.end_other_sessions() RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
DECLARE
  session uuid := nullif(auth.jwt() ->> 'session_id', '')::uuid;
  ended integer;
BEGIN
  IF auth.role() IS DISTINCT FROM 'authenticated' OR auth.uid() IS NULL THEN
    RAISE EXCEPTION 'Signing out needs a user''s access token' USING ERRCODE = 'PT403';
  END IF;
  IF session IS NULL THEN
    RAISE EXCEPTION 'This token belongs to no session' USING ERRCODE = '22023';
  END IF;
  UPDATE auth.sessions s SET revoked_at = now(), revoked_reason = 'logout'
   WHERE s.user_id = auth.uid() AND s.revoked_at IS NULL AND s.id <> session;
  GET DIAGNOSTICS ended = ROW_COUNT;
  RETURN ended;
END
$$;

-- One user, for the service key or an admin.
CREATE FUNCTION auth.admin_get_user(p_user_id uuid) RETURNS SETOF auth.admin_user
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = ''
AS $$
DECLARE
  target auth.users;
BEGIN
  PERFORM auth.require_user_admin('Reading a user');
  SELECT * INTO target FROM auth.users WHERE id = p_user_id;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'No user with id %', p_user_id USING ERRCODE = 'P0002';
  END IF;
  RETURN NEXT auth.admin_view(target);
END
$$;

-- Changes a user's email, password hash, confirmation or user_metadata (each only when given).
-- The same targets as the other admin actions (admin_target); a taken email is 23505, and a new
-- password ends the user's sessions (the credential trigger).
CREATE FUNCTION auth.admin_update_user(p_user_id uuid, p_email text, p_password_hash text, p_confirm boolean, p_user_metadata jsonb)
RETURNS SETOF auth.admin_user
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
DECLARE
  target auth.users;
BEGIN
  PERFORM auth.require_user_admin('Updating users');
  target := auth.admin_target(p_user_id);
  IF p_user_metadata IS NOT NULL AND jsonb_typeof(p_user_metadata) IS DISTINCT FROM 'object' THEN
    RAISE EXCEPTION 'user_metadata must be a JSON object' USING ERRCODE = '22023';
  END IF;
  IF p_email IS NOT NULL AND EXISTS (SELECT FROM auth.users WHERE lower(email) = lower(btrim(p_email)) AND id <> target.id) THEN
    RAISE EXCEPTION 'An account with this email already exists' USING ERRCODE = '23505';
  END IF;
  UPDATE auth.users u SET
    email = coalesce(lower(btrim(p_email)), u.email),
    password_hash = coalesce(p_password_hash, u.password_hash),
    email_confirmed_at = CASE WHEN p_confirm THEN coalesce(u.email_confirmed_at, now())
                              WHEN p_confirm = false THEN NULL ELSE u.email_confirmed_at END,
    user_metadata = CASE WHEN p_user_metadata IS NULL THEN u.user_metadata ELSE auth.merge_metadata(u.user_metadata, p_user_metadata) END
   WHERE u.id = target.id
  RETURNING * INTO target;
  RETURN NEXT auth.admin_view(target);
END
$$;

REVOKE ALL ON FUNCTION auth.merge_metadata(jsonb, jsonb), auth.update_my_metadata(jsonb), auth.end_other_sessions(), auth.admin_get_user(uuid),
  auth.admin_update_user(uuid, text, text, boolean, jsonb) FROM PUBLIC;
-- Granted to every API role so that the functions themselves give the refusal, with a clear message.
GRANT EXECUTE ON FUNCTION auth.update_my_metadata(jsonb), auth.end_other_sessions(), auth.admin_get_user(uuid),
  auth.admin_update_user(uuid, text, text, boolean, jsonb) TO anon, authenticated, service_role;

-- migrate:down
DROP FUNCTION auth.admin_update_user(uuid, text, text, boolean, jsonb);
DROP FUNCTION auth.admin_get_user(uuid);
DROP FUNCTION auth.end_other_sessions();
DROP FUNCTION auth.update_my_metadata(jsonb);
DROP FUNCTION auth.merge_metadata(jsonb, jsonb);
CREATE OR REPLACE FUNCTION auth.end_sessions_on_credential_change() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
BEGIN
  UPDATE auth.sessions SET revoked_at = now(), revoked_reason = 'credentials'
   WHERE user_id = NEW.id AND revoked_at IS NULL;
  RETURN NULL;
END
$$;
UPDATE auth.sessions SET method = 'password' WHERE method = 'recovery';
ALTER TABLE auth.sessions DROP CONSTRAINT sessions_method_check;
ALTER TABLE auth.sessions ADD CONSTRAINT sessions_method_check
  CHECK (method IN ('password', 'magic_link', 'signup', 'invite', 'confirm_email'));
ALTER TABLE auth.users DROP COLUMN user_metadata;
