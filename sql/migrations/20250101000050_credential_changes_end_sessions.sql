-- A change of a user's app role or password ends every session of that user, in the same
-- transaction as the change, whichever path made it (the admin API, the admin account from the
-- environment, a future password change): a refresh token issued under the old credentials must
-- not mint tokens under the new ones.
-- The account the environment's admin settings created is marked, so that later starts may make
-- it admin again; any other account with that address is only promoted on the operator's word.

-- migrate:up
ALTER TABLE auth.sessions DROP CONSTRAINT sessions_revoked_reason_check;
ALTER TABLE auth.sessions ADD CONSTRAINT sessions_revoked_reason_check
  CHECK (revoked_reason IN ('logout', 'reuse', 'expired', 'credentials'));

CREATE FUNCTION auth.end_sessions_on_credential_change() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
BEGIN
  UPDATE auth.sessions SET revoked_at = now(), revoked_reason = 'credentials'
   WHERE user_id = NEW.id AND revoked_at IS NULL;
  RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION auth.end_sessions_on_credential_change() FROM PUBLIC;

CREATE TRIGGER users_end_sessions_on_credential_change AFTER UPDATE OF app_role, password_hash ON auth.users
  FOR EACH ROW
  WHEN (OLD.app_role IS DISTINCT FROM NEW.app_role OR OLD.password_hash IS DISTINCT FROM NEW.password_hash)
  EXECUTE FUNCTION auth.end_sessions_on_credential_change();

ALTER TABLE auth.users ADD COLUMN created_as_env_admin boolean NOT NULL DEFAULT false;

-- migrate:down
ALTER TABLE auth.users DROP COLUMN created_as_env_admin;
DROP TRIGGER users_end_sessions_on_credential_change ON auth.users;
DROP FUNCTION auth.end_sessions_on_credential_change();
UPDATE auth.sessions SET revoked_reason = 'logout' WHERE revoked_reason = 'credentials';
ALTER TABLE auth.sessions DROP CONSTRAINT sessions_revoked_reason_check;
ALTER TABLE auth.sessions ADD CONSTRAINT sessions_revoked_reason_check
  CHECK (revoked_reason IN ('logout', 'reuse', 'expired'));
