-- The sidecar runs SQL "as the caller" over connections of its own login role, plinth_caller, never
-- over its owner (superuser) connections: like PostgREST's authenticator it can do nothing itself
-- (NOINHERIT, no grants) but switch to one of the API roles, so RESET ROLE leads nowhere. Roles
-- are cluster-wide, so creation is idempotent.

-- migrate:up
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'plinth_caller') THEN
    CREATE ROLE plinth_caller LOGIN NOINHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION;
  END IF;
END
$$;
GRANT anon, authenticated, service_role TO plinth_caller;

-- Server-side secrets; only the owner connection reads them. plinth_caller's password is one: the
-- sidecar sets it at start, and every sidecar of the database reads the same value here, however
-- each spells the database's address.
CREATE TABLE auth.secrets (
  name text PRIMARY KEY,
  value bytea NOT NULL CHECK (length(value) >= 32)
);
REVOKE ALL ON auth.secrets FROM PUBLIC;
-- gen_random_uuid() draws from the server's strong random source: 244 random bits here.
INSERT INTO auth.secrets (name, value)
VALUES ('plinth_caller_password', sha256(uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid())));

-- migrate:down
DROP TABLE auth.secrets;
REVOKE anon, authenticated, service_role FROM plinth_caller;
DROP OWNED BY plinth_caller;
DROP ROLE plinth_caller;
