-- The account functions refuse a caller that is the wrong kind (an API key where a user's token
-- is needed, an editor where an admin is) with SQLSTATE PT403: HTTP 403 whatever the role, as
-- PostgREST renders PTnnn. 42501 would say "sign in" (401) to an anonymous caller, which is wrong
-- advice for a caller that presented a valid key but not the kind these functions need.

-- migrate:up
-- The caller's own profile, while the session its token names (claim session_id) is not revoked.
CREATE OR REPLACE FUNCTION auth.me() RETURNS SETOF auth.user_profile
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = ''
AS $$
BEGIN
  IF auth.role() IS DISTINCT FROM 'authenticated' OR auth.uid() IS NULL THEN
    RAISE EXCEPTION 'This needs a user''s access token, not an API key' USING ERRCODE = 'PT403';
  END IF;
  RETURN QUERY
    SELECT u.id, u.email, u.app_role, u.email_confirmed_at, u.last_sign_in_at, u.created_at, u.updated_at
      FROM auth.users u
     WHERE u.id = auth.uid()
       AND NOT EXISTS (SELECT FROM auth.sessions s
                        WHERE s.id = nullif(auth.jwt() ->> 'session_id', '')::uuid AND s.revoked_at IS NOT NULL);
END
$$;

-- Signs the caller out: the session their token names, or (p_everywhere) all of their sessions.
-- Access tokens already issued stay valid until they expire; their refresh tokens die now.
CREATE OR REPLACE FUNCTION auth.end_session(p_everywhere boolean) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
DECLARE
  session uuid := nullif(auth.jwt() ->> 'session_id', '')::uuid;
  ended integer;
BEGIN
  IF auth.role() IS DISTINCT FROM 'authenticated' OR auth.uid() IS NULL THEN
    RAISE EXCEPTION 'Signing out needs a user''s access token' USING ERRCODE = 'PT403';
  END IF;
  IF NOT p_everywhere AND session IS NULL THEN
    RAISE EXCEPTION 'This token belongs to no session' USING ERRCODE = '22023',
      HINT = 'Send {"scope":"global"} to end every session of this user';
  END IF;
  UPDATE auth.sessions s SET revoked_at = now(), revoked_reason = 'logout'
   WHERE s.user_id = auth.uid() AND s.revoked_at IS NULL AND (p_everywhere OR s.id = session);
  GET DIAGNOSTICS ended = ROW_COUNT;
  RETURN ended;
END
$$;

-- The user list, for the service key or an admin. "Admin" is checked twice: the token says so
-- (auth.app_role()) and the account still is one (a demoted admin's unexpired token stops working).
CREATE OR REPLACE FUNCTION auth.list_users(p_limit integer, p_offset integer) RETURNS SETOF auth.user_profile
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = ''
AS $$
BEGIN
  IF NOT (auth.role() = 'service_role'
          OR (auth.role() = 'authenticated' AND auth.app_role() = 'admin'
              AND EXISTS (SELECT FROM auth.users WHERE id = auth.uid() AND app_role = 'admin'))) THEN
    RAISE EXCEPTION 'Listing users needs the service key or an admin''s token'
      USING ERRCODE = 'PT403';
  END IF;
  RETURN QUERY
    SELECT u.id, u.email, u.app_role, u.email_confirmed_at, u.last_sign_in_at, u.created_at, u.updated_at
      FROM auth.users u
     ORDER BY u.created_at, u.id
     LIMIT p_limit OFFSET p_offset;
END
$$;

-- Sets a user's app role. Only the service key may: not an admin, and never a user for themself.
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

-- migrate:down
-- The caller's own profile, while the session its token names (claim session_id) is not revoked.
CREATE OR REPLACE FUNCTION auth.me() RETURNS SETOF auth.user_profile
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = ''
AS $$
BEGIN
  IF auth.role() IS DISTINCT FROM 'authenticated' OR auth.uid() IS NULL THEN
    RAISE EXCEPTION 'This needs a user''s access token, not an API key' USING ERRCODE = '42501';
  END IF;
  RETURN QUERY
    SELECT u.id, u.email, u.app_role, u.email_confirmed_at, u.last_sign_in_at, u.created_at, u.updated_at
      FROM auth.users u
     WHERE u.id = auth.uid()
       AND NOT EXISTS (SELECT FROM auth.sessions s
                        WHERE s.id = nullif(auth.jwt() ->> 'session_id', '')::uuid AND s.revoked_at IS NOT NULL);
END
$$;

-- Signs the caller out: the session their token names, or (p_everywhere) all of their sessions.
-- Access tokens already issued stay valid until they expire; their refresh tokens die now.
CREATE OR REPLACE FUNCTION auth.end_session(p_everywhere boolean) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
DECLARE
  session uuid := nullif(auth.jwt() ->> 'session_id', '')::uuid;
  ended integer;
BEGIN
  IF auth.role() IS DISTINCT FROM 'authenticated' OR auth.uid() IS NULL THEN
    RAISE EXCEPTION 'Signing out needs a user''s access token' USING ERRCODE = '42501';
  END IF;
  IF NOT p_everywhere AND session IS NULL THEN
    RAISE EXCEPTION 'This token belongs to no session' USING ERRCODE = '22023',
      HINT = 'Send {"scope":"global"} to end every session of this user';
  END IF;
  UPDATE auth.sessions s SET revoked_at = now(), revoked_reason = 'logout'
   WHERE s.user_id = auth.uid() AND s.revoked_at IS NULL AND (p_everywhere OR s.id = session);
  GET DIAGNOSTICS ended = ROW_COUNT;
  RETURN ended;
END
$$;

-- The user list, for the service key or an admin. "Admin" is checked twice: the token says so
-- (auth.app_role()) and the account still is one (a demoted admin's unexpired token stops working).
CREATE OR REPLACE FUNCTION auth.list_users(p_limit integer, p_offset integer) RETURNS SETOF auth.user_profile
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = ''
AS $$
BEGIN
  IF NOT (auth.role() = 'service_role'
          OR (auth.role() = 'authenticated' AND auth.app_role() = 'admin'
              AND EXISTS (SELECT FROM auth.users WHERE id = auth.uid() AND app_role = 'admin'))) THEN
    RAISE EXCEPTION 'Listing users needs the service key or an admin''s token'
      USING ERRCODE = '42501';
  END IF;
  RETURN QUERY
    SELECT u.id, u.email, u.app_role, u.email_confirmed_at, u.last_sign_in_at, u.created_at, u.updated_at
      FROM auth.users u
     ORDER BY u.created_at, u.id
     LIMIT p_limit OFFSET p_offset;
END
$$;

-- Sets a user's app role. Only the service key may: not an admin, and never a user for themself.
CREATE OR REPLACE FUNCTION auth.set_app_role(p_user_id uuid, p_app_role text) RETURNS SETOF auth.user_profile
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
BEGIN
  IF auth.role() IS DISTINCT FROM 'service_role' THEN
    RAISE EXCEPTION 'Only the service key may change a user''s app role'
      USING ERRCODE = '42501';
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
