-- Less work in PostgreSQL per sign-in and per refresh, with the same rows written: the audit
-- triggers on auth.users and auth.sessions fire on an update only when it changes what they
-- record, so a sign-in's last_sign_in_at and a refresh's refreshed_at call no function.

-- migrate:up
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
