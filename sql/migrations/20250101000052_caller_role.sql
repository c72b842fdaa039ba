-- The sidecar runs SQL "as the caller" over connections of its own login role, plinth_caller, never
-- over its owner (superuser) connections: like PostgREST's authenticator it can do nothing itself
-- (NOINHERIT, no grants) but switch to one of the API roles, so RESET ROLE leads nowhere. The
-- sidecar sets its password at start. Roles are cluster-wide, so creation is idempotent.

-- migrate:up
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'plinth_caller') THEN
    CREATE ROLE plinth_caller LOGIN NOINHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION;
  END IF;
END
$$;
GRANT anon, authenticated, service_role TO plinth_caller;

-- migrate:down
REVOKE anon, authenticated, service_role FROM plinth_caller;
DROP OWNED BY plinth_caller;
DROP ROLE plinth_caller;
