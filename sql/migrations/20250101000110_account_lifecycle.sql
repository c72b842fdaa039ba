-- The account lifecycle: one-time links for password reset, email confirmation, email change and
-- invitations; disabled accounts; and the admin operations on users. Each admin operation is a
-- SECURITY DEFINER function that checks its caller itself (the service key, or an admin whose
-- account still is one), refusing with PT403, so the rule lives here and nowhere else.

-- migrate:up
ALTER TABLE auth.users ADD COLUMN disabled_at timestamptz;

ALTER TABLE auth.one_time_tokens DROP CONSTRAINT one_time_tokens_purpose_check;
ALTER TABLE auth.one_time_tokens ADD CONSTRAINT one_time_tokens_purpose_check
  CHECK (purpose IN ('magic_link', 'password_reset', 'confirm_email', 'email_change', 'invite'));
-- The address an email_change link moves the account to.
ALTER TABLE auth.one_time_tokens ADD COLUMN new_email text;

ALTER TABLE auth.sessions DROP CONSTRAINT sessions_revoked_reason_check;
ALTER TABLE auth.sessions ADD CONSTRAINT sessions_revoked_reason_check
  CHECK (revoked_reason IN ('logout', 'reuse', 'expired', 'credentials', 'disabled', 'admin'));
ALTER TABLE auth.sessions DROP CONSTRAINT sessions_method_check;
ALTER TABLE auth.sessions ADD CONSTRAINT sessions_method_check
  CHECK (method IN ('password', 'magic_link', 'signup', 'invite', 'confirm_email'));

-- No session starts for a disabled account, whichever way it signs in.
CREATE FUNCTION auth.refuse_sessions_of_disabled() RETURNS trigger
LANGUAGE plpgsql SET search_path = ''
AS $$
BEGIN
  IF EXISTS (SELECT FROM auth.users WHERE id = NEW.user_id AND disabled_at IS NOT NULL) THEN
    RAISE EXCEPTION 'This account is disabled' USING ERRCODE = 'PT403', HINT = 'Ask an administrator to enable it';
  END IF;
  RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION auth.refuse_sessions_of_disabled() FROM PUBLIC;
CREATE TRIGGER sessions_refuse_disabled BEFORE INSERT ON auth.sessions
  FOR EACH ROW EXECUTE FUNCTION auth.refuse_sessions_of_disabled();

-- What an admin sees of a user: the profile, whether it is disabled, and its live sessions.
CREATE TYPE auth.admin_user AS (
  id uuid,
  email text,
  app_role text,
  email_confirmed_at timestamptz,
  last_sign_in_at timestamptz,
  created_at timestamptz,
  updated_at timestamptz,
  disabled_at timestamptz,
  has_password boolean,
  active_sessions integer
);

CREATE FUNCTION auth.admin_view(u auth.users) RETURNS auth.admin_user
LANGUAGE sql STABLE SET search_path = ''
AS $$
  SELECT u.id, u.email, u.app_role, u.email_confirmed_at, u.last_sign_in_at, u.created_at, u.updated_at,
         u.disabled_at, u.password_hash IS NOT NULL,
         (SELECT count(*)::integer FROM auth.sessions s WHERE s.user_id = u.id AND s.revoked_at IS NULL)
$$;

-- The caller may administer users: the service key, or an admin whose account still is one.
CREATE FUNCTION auth.require_user_admin(p_what text) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = ''
AS $$
BEGIN
  IF NOT (auth.role() = 'service_role' OR auth.is_admin()) THEN
    RAISE EXCEPTION '% needs the service key or an admin''s token', p_what USING ERRCODE = 'PT403';
  END IF;
END
$$;

-- The target of an admin action on one user, locked. An admin may act on editors and never on
-- themself (no locking oneself out); only the service key acts on admins.
CREATE FUNCTION auth.admin_target(p_user_id uuid) RETURNS auth.users
LANGUAGE plpgsql SET search_path = ''
AS $$
DECLARE
  target auth.users;
BEGIN
  SELECT * INTO target FROM auth.users WHERE id = p_user_id FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'No user with id %', p_user_id USING ERRCODE = 'P0002';
  END IF;
  IF auth.role() IS DISTINCT FROM 'service_role' AND (target.id = auth.uid() OR target.app_role = 'admin') THEN
    RAISE EXCEPTION 'An admin cannot do this to an admin account (or their own); use the service key'
      USING ERRCODE = 'PT403';
  END IF;
  RETURN target;
END
$$;

-- Users whose email contains p_query (all when it is null or empty), oldest first.
CREATE FUNCTION auth.admin_search_users(p_query text, p_limit integer, p_offset integer) RETURNS SETOF auth.admin_user
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = ''
AS $$
BEGIN
  PERFORM auth.require_user_admin('Listing users');
  RETURN QUERY
    SELECT (auth.admin_view(u)).*
      FROM auth.users u
     WHERE coalesce(p_query, '') = ''
        OR strpos(lower(u.email), lower(p_query)) > 0
     ORDER BY u.created_at, u.id
     LIMIT p_limit OFFSET p_offset;
END
$$;

CREATE FUNCTION auth.admin_count_users(p_query text) RETURNS bigint
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = ''
AS $$
BEGIN
  PERFORM auth.require_user_admin('Counting users');
  RETURN (SELECT count(*) FROM auth.users u
           WHERE coalesce(p_query, '') = '' OR strpos(lower(u.email), lower(p_query)) > 0);
END
$$;

-- Creates an account (an editor), with a password hash or none (it can then sign in by magic
-- link or an invitation), confirmed or not. 23505 when the email is taken.
CREATE FUNCTION auth.admin_create_user(p_email text, p_password_hash text, p_confirmed boolean) RETURNS SETOF auth.admin_user
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
DECLARE
  created auth.users;
BEGIN
  PERFORM auth.require_user_admin('Creating users');
  INSERT INTO auth.users (email, password_hash, email_confirmed_at)
  VALUES (lower(btrim(p_email)), p_password_hash, CASE WHEN p_confirmed THEN now() END)
  ON CONFLICT ((lower(email))) DO NOTHING
  RETURNING * INTO created;
  IF created.id IS NULL THEN
    RAISE EXCEPTION 'An account with this email already exists' USING ERRCODE = '23505';
  END IF;
  RETURN NEXT auth.admin_view(created);
END
$$;

-- Invites an address: the account is created without a password (or an existing account that
-- never set one is invited again), and the link's token hash is stored; the sidecar mails it.
CREATE FUNCTION auth.admin_invite_user(p_email text, p_token_hash bytea, p_ttl_seconds integer) RETURNS SETOF auth.admin_user
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
DECLARE
  invited auth.users;
BEGIN
  PERFORM auth.require_user_admin('Inviting users');
  INSERT INTO auth.users (email) VALUES (lower(btrim(p_email)))
  ON CONFLICT ((lower(email))) DO NOTHING
  RETURNING * INTO invited;
  IF invited.id IS NULL THEN
    SELECT * INTO invited FROM auth.users WHERE lower(email) = lower(btrim(p_email));
    IF invited.password_hash IS NOT NULL OR invited.email_confirmed_at IS NOT NULL THEN
      RAISE EXCEPTION 'An account with this email already exists' USING ERRCODE = '23505';
    END IF;
  END IF;
  INSERT INTO auth.one_time_tokens (token_hash, user_id, purpose, expires_at)
  VALUES (p_token_hash, invited.id, 'invite', now() + make_interval(secs => p_ttl_seconds));
  RETURN NEXT auth.admin_view(invited);
END
$$;

-- Disables or enables an account. Disabling ends every session now (open sockets close with them).
CREATE FUNCTION auth.admin_set_disabled(p_user_id uuid, p_disabled boolean) RETURNS SETOF auth.admin_user
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
DECLARE
  target auth.users;
BEGIN
  PERFORM auth.require_user_admin('Disabling users');
  target := auth.admin_target(p_user_id);
  UPDATE auth.users SET disabled_at = CASE WHEN p_disabled THEN coalesce(disabled_at, now()) END
   WHERE id = target.id RETURNING * INTO target;
  IF p_disabled THEN
    UPDATE auth.sessions SET revoked_at = now(), revoked_reason = 'disabled'
     WHERE user_id = target.id AND revoked_at IS NULL;
  END IF;
  RETURN NEXT auth.admin_view(target);
END
$$;

-- Ends every session of a user; returns how many were live.
CREATE FUNCTION auth.admin_end_sessions(p_user_id uuid) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
DECLARE
  target auth.users;
  ended integer;
BEGIN
  PERFORM auth.require_user_admin('Ending a user''s sessions');
  target := auth.admin_target(p_user_id);
  UPDATE auth.sessions SET revoked_at = now(), revoked_reason = 'admin'
   WHERE user_id = target.id AND revoked_at IS NULL;
  GET DIAGNOSTICS ended = ROW_COUNT;
  RETURN ended;
END
$$;

-- Deletes a user. Their sessions and tokens go with them (ON DELETE CASCADE; live sessions are
-- announced, so sockets close), and so do their files: public.files.owner_id cascades, the
-- cascade to storage.file_links queues each object in storage.deletions, and the storage sweeper
-- removes the bytes.
CREATE FUNCTION auth.admin_delete_user(p_user_id uuid) RETURNS SETOF auth.admin_user
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
DECLARE
  target auth.users;
BEGIN
  PERFORM auth.require_user_admin('Deleting users');
  target := auth.admin_target(p_user_id);
  DELETE FROM auth.users WHERE id = target.id;
  RETURN NEXT auth.admin_view(target);
END
$$;

REVOKE ALL ON FUNCTION auth.admin_view(auth.users), auth.require_user_admin(text), auth.admin_target(uuid),
  auth.admin_search_users(text, integer, integer), auth.admin_count_users(text),
  auth.admin_create_user(text, text, boolean), auth.admin_invite_user(text, bytea, integer),
  auth.admin_set_disabled(uuid, boolean), auth.admin_end_sessions(uuid), auth.admin_delete_user(uuid) FROM PUBLIC;
-- Granted to every API role so that the functions themselves give the refusal, with a clear message.
GRANT EXECUTE ON FUNCTION auth.admin_search_users(text, integer, integer), auth.admin_count_users(text),
  auth.admin_create_user(text, text, boolean), auth.admin_invite_user(text, bytea, integer),
  auth.admin_set_disabled(uuid, boolean), auth.admin_end_sessions(uuid), auth.admin_delete_user(uuid)
  TO anon, authenticated, service_role;

-- migrate:down
DROP FUNCTION auth.admin_delete_user(uuid);
DROP FUNCTION auth.admin_end_sessions(uuid);
DROP FUNCTION auth.admin_set_disabled(uuid, boolean);
DROP FUNCTION auth.admin_invite_user(text, bytea, integer);
DROP FUNCTION auth.admin_create_user(text, text, boolean);
DROP FUNCTION auth.admin_count_users(text);
DROP FUNCTION auth.admin_search_users(text, integer, integer);
DROP FUNCTION auth.admin_target(uuid);
DROP FUNCTION auth.require_user_admin(text);
DROP FUNCTION auth.admin_view(auth.users);
DROP TYPE auth.admin_user;
DROP TRIGGER sessions_refuse_disabled ON auth.sessions;
DROP FUNCTION auth.refuse_sessions_of_disabled();
UPDATE auth.sessions SET method = 'magic_link' WHERE method IN ('invite', 'confirm_email');
ALTER TABLE auth.sessions DROP CONSTRAINT sessions_method_check;
ALTER TABLE auth.sessions ADD CONSTRAINT sessions_method_check CHECK (method IN ('password', 'magic_link', 'signup'));
UPDATE auth.sessions SET revoked_reason = 'logout' WHERE revoked_reason IN ('disabled', 'admin');
ALTER TABLE auth.sessions DROP CONSTRAINT sessions_revoked_reason_check;
ALTER TABLE auth.sessions ADD CONSTRAINT sessions_revoked_reason_check
  CHECK (revoked_reason IN ('logout', 'reuse', 'expired', 'credentials'));
DELETE FROM auth.one_time_tokens WHERE purpose <> 'magic_link';
ALTER TABLE auth.one_time_tokens DROP COLUMN new_email;
ALTER TABLE auth.one_time_tokens DROP CONSTRAINT one_time_tokens_purpose_check;
ALTER TABLE auth.one_time_tokens ADD CONSTRAINT one_time_tokens_purpose_check CHECK (purpose IN ('magic_link'));
ALTER TABLE auth.users DROP COLUMN disabled_at;
