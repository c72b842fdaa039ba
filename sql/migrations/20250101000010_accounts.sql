-- Accounts: sessions with rotating refresh tokens, one-time (magic link) tokens, rate-limit
-- buckets shared by every sidecar, and the SQL functions that decide who may read the user list
-- or change an app role. Everything lives in the private `auth` schema, which PostgREST never
-- exposes; only the sidecar (the owner connection) touches the tables. Tokens are stored as
-- SHA-256 hashes: a copy of the database does not hand out live sessions.

-- migrate:up

-- One row per sign-in. Its id is the refresh-token family: every refresh token issued by
-- rotation belongs to the session that started it, so a reused token can revoke all of them.
CREATE TABLE auth.sessions (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,
  method text NOT NULL CHECK (method IN ('password', 'magic_link', 'signup')),
  created_at timestamptz NOT NULL DEFAULT now(),
  refreshed_at timestamptz,
  revoked_at timestamptz,
  revoked_reason text CHECK (revoked_reason IN ('logout', 'reuse', 'expired'))
);
CREATE INDEX sessions_user_id_idx ON auth.sessions (user_id);

CREATE TABLE auth.refresh_tokens (
  token_hash bytea PRIMARY KEY CHECK (length(token_hash) = 32),
  session_id uuid NOT NULL REFERENCES auth.sessions (id) ON DELETE CASCADE,
  created_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL,
  -- Set when the token is exchanged; presenting it again is reuse.
  used_at timestamptz
);
CREATE INDEX refresh_tokens_session_id_idx ON auth.refresh_tokens (session_id);

CREATE TABLE auth.one_time_tokens (
  token_hash bytea PRIMARY KEY CHECK (length(token_hash) = 32),
  user_id uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,
  purpose text NOT NULL CHECK (purpose IN ('magic_link')),
  created_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL,
  used_at timestamptz
);
CREATE INDEX one_time_tokens_user_id_idx ON auth.one_time_tokens (user_id);

-- Fixed-window counters. UNLOGGED: they are cheap to lose in a crash (the window restarts) and
-- need no WAL; every sidecar of a deployment counts in the same rows.
CREATE UNLOGGED TABLE auth.rate_limits (
  bucket text PRIMARY KEY,
  window_start timestamptz NOT NULL,
  hits integer NOT NULL
);

-- Counts one hit in `p_bucket` and returns 0 when it is within `p_limit` hits per window, or the
-- whole seconds until the window ends (the Retry-After) when it is over.
CREATE FUNCTION auth.rate_limit_hit(p_bucket text, p_limit integer, p_window_seconds integer) RETURNS integer
LANGUAGE plpgsql SET search_path = ''
AS $$
DECLARE
  window_length interval := make_interval(secs => p_window_seconds);
  b auth.rate_limits;
BEGIN
  INSERT INTO auth.rate_limits AS r (bucket, window_start, hits)
  VALUES (p_bucket, clock_timestamp(), 1)
  ON CONFLICT (bucket) DO UPDATE SET
    window_start = CASE WHEN r.window_start + window_length <= clock_timestamp() THEN clock_timestamp() ELSE r.window_start END,
    hits = CASE WHEN r.window_start + window_length <= clock_timestamp() THEN 1 ELSE r.hits + 1 END
  RETURNING * INTO b;
  IF b.hits <= p_limit THEN
    RETURN 0;
  END IF;
  RETURN greatest(1, ceil(extract(epoch FROM b.window_start + window_length - clock_timestamp())))::integer;
END
$$;

-- Drops what can no longer be used: finished rate windows, expired or used tokens, dead sessions.
CREATE FUNCTION auth.sweep_expired(p_window_seconds integer) RETURNS void
LANGUAGE sql SET search_path = ''
AS $$
  DELETE FROM auth.rate_limits WHERE window_start + make_interval(secs => p_window_seconds) < clock_timestamp();
  DELETE FROM auth.one_time_tokens WHERE expires_at < now() - interval '1 day';
  DELETE FROM auth.sessions s
   WHERE (s.revoked_at IS NOT NULL AND s.revoked_at < now() - interval '1 day')
      OR NOT EXISTS (SELECT FROM auth.refresh_tokens t
                      WHERE t.session_id = s.id AND t.used_at IS NULL AND t.expires_at > now() - interval '1 day');
$$;

REVOKE ALL ON FUNCTION auth.rate_limit_hit(text, integer, integer), auth.sweep_expired(integer) FROM PUBLIC;

-- What the API may show of a user: never the password hash.
CREATE TYPE auth.user_profile AS (
  id uuid,
  email text,
  app_role text,
  email_confirmed_at timestamptz,
  last_sign_in_at timestamptz,
  created_at timestamptz,
  updated_at timestamptz
);

-- The caller's own profile, while the session its token names (claim session_id) is not revoked.
CREATE FUNCTION auth.me() RETURNS SETOF auth.user_profile
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
CREATE FUNCTION auth.end_session(p_everywhere boolean) RETURNS integer
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
CREATE FUNCTION auth.list_users(p_limit integer, p_offset integer) RETURNS SETOF auth.user_profile
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
CREATE FUNCTION auth.set_app_role(p_user_id uuid, p_app_role text) RETURNS SETOF auth.user_profile
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

REVOKE ALL ON FUNCTION auth.me(), auth.end_session(boolean), auth.list_users(integer, integer),
  auth.set_app_role(uuid, text) FROM PUBLIC;
-- Granted to every API role so that the functions themselves give the refusal, with a clear message.
GRANT EXECUTE ON FUNCTION auth.me(), auth.end_session(boolean), auth.list_users(integer, integer),
  auth.set_app_role(uuid, text) TO anon, authenticated, service_role;

-- migrate:down
DROP FUNCTION auth.set_app_role(uuid, text);
DROP FUNCTION auth.list_users(integer, integer);
DROP FUNCTION auth.end_session(boolean);
DROP FUNCTION auth.me();
DROP TYPE auth.user_profile;
DROP FUNCTION auth.sweep_expired(integer);
DROP FUNCTION auth.rate_limit_hit(text, integer, integer);
DROP TABLE auth.rate_limits;
DROP TABLE auth.one_time_tokens;
DROP TABLE auth.refresh_tokens;
DROP TABLE auth.sessions;
