-- Less work in PostgreSQL per password sign-in, with the same rows written:
-- * auth.password_sign_in_attempt counts the attempt in both rate-limit buckets with one upsert
--   and reads the account in the same call (before: two function calls and a lateral join).
-- * The audit triggers on auth.users and auth.sessions fire on an update only when it changes what
--   they record, so a sign-in's last_sign_in_at and a refresh's refreshed_at call no function.

-- migrate:up
CREATE FUNCTION auth.password_sign_in_attempt(
  p_address_bucket text, p_address_limit integer,
  p_email_bucket text, p_email_limit integer,
  p_window_seconds integer, p_email text)
RETURNS TABLE (retry_after integer, user_id uuid, password_hash text, disabled boolean, email_confirmed boolean)
LANGUAGE plpgsql SET search_path = ''
AS $$
#variable_conflict use_column
DECLARE
  window_length interval := make_interval(secs => p_window_seconds);
  at_ timestamptz := clock_timestamp();
  retry integer;
BEGIN
  -- The same counting as auth.rate_limit_hit, for both buckets (always in this order).
  WITH hit AS (
    INSERT INTO auth.rate_limits AS r (bucket, window_start, hits)
    VALUES (p_address_bucket, at_, 1), (p_email_bucket, at_, 1)
    ON CONFLICT (bucket) DO UPDATE SET
      window_start = CASE WHEN r.window_start + window_length <= at_ THEN at_ ELSE r.window_start END,
      hits = CASE WHEN r.window_start + window_length <= at_ THEN 1 ELSE r.hits + 1 END
    RETURNING r.bucket, r.window_start, r.hits)
  SELECT coalesce(max(CASE WHEN hit.hits <= CASE WHEN hit.bucket = p_address_bucket THEN p_address_limit ELSE p_email_limit END THEN 0
                           ELSE greatest(1, ceil(extract(epoch FROM hit.window_start + window_length - at_)))::integer END), 0)
    INTO retry FROM hit;
  RETURN QUERY
    SELECT retry, u.id, u.password_hash, u.disabled_at IS NOT NULL, u.email_confirmed_at IS NOT NULL
      FROM (SELECT) one LEFT JOIN auth.users u ON lower(u.email) = p_email;
END
$$;
REVOKE ALL ON FUNCTION auth.password_sign_in_attempt(text, integer, text, integer, integer, text) FROM PUBLIC;

DROP TRIGGER users_audit ON auth.users;
CREATE TRIGGER users_audit AFTER INSERT OR DELETE ON auth.users FOR EACH ROW EXECUTE FUNCTION audit.on_users();
CREATE TRIGGER users_audit_update AFTER UPDATE ON auth.users FOR EACH ROW
  WHEN (NEW.password_hash IS DISTINCT FROM OLD.password_hash OR NEW.app_role IS DISTINCT FROM OLD.app_role OR NEW.email IS DISTINCT FROM OLD.email)
  EXECUTE FUNCTION audit.on_users();

DROP TRIGGER sessions_audit ON auth.sessions;
CREATE TRIGGER sessions_audit AFTER INSERT ON auth.sessions FOR EACH ROW EXECUTE FUNCTION audit.on_sessions();
CREATE TRIGGER sessions_audit_update AFTER UPDATE ON auth.sessions FOR EACH ROW
  WHEN (NEW.revoked_at IS NOT NULL AND OLD.revoked_at IS NULL)
  EXECUTE FUNCTION audit.on_sessions();

-- migrate:down
DROP TRIGGER sessions_audit_update ON auth.sessions;
DROP TRIGGER sessions_audit ON auth.sessions;
CREATE TRIGGER sessions_audit AFTER INSERT OR UPDATE ON auth.sessions FOR EACH ROW EXECUTE FUNCTION audit.on_sessions();

DROP TRIGGER users_audit_update ON auth.users;
DROP TRIGGER users_audit ON auth.users;
CREATE TRIGGER users_audit AFTER INSERT OR UPDATE OR DELETE ON auth.users FOR EACH ROW EXECUTE FUNCTION audit.on_users();

DROP FUNCTION auth.password_sign_in_attempt(text, integer, text, integer, integer, text);
