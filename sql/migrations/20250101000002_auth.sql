-- The private `auth` schema: users, signing keys, and the helpers that policies call.
-- PostgREST never exposes it (db-schemas = public); the API roles may only call the helpers.

-- migrate:up
CREATE SCHEMA auth;
REVOKE ALL ON SCHEMA auth FROM PUBLIC;
GRANT USAGE ON SCHEMA auth TO anon, authenticated, service_role, authenticator;

-- The verified JWT claims of the current request, as PostgREST (and the sidecar's asCaller) set them.
CREATE FUNCTION auth.jwt() RETURNS jsonb
LANGUAGE sql STABLE
AS $$ SELECT coalesce(nullif(current_setting('request.jwt.claims', true), ''), '{}')::jsonb $$;

CREATE FUNCTION auth.uid() RETURNS uuid
LANGUAGE sql STABLE
AS $$ SELECT nullif(auth.jwt() ->> 'sub', '')::uuid $$;

CREATE FUNCTION auth.role() RETURNS text
LANGUAGE sql STABLE
AS $$ SELECT coalesce(auth.jwt() ->> 'role', current_user::text) $$;

CREATE FUNCTION auth.email() RETURNS text
LANGUAGE sql STABLE
AS $$ SELECT auth.jwt() ->> 'email' $$;

-- The user's application role: 'editor' (default) or 'admin'.
CREATE FUNCTION auth.app_role() RETURNS text
LANGUAGE sql STABLE
AS $$ SELECT auth.jwt() ->> 'app_role' $$;

REVOKE ALL ON FUNCTION auth.jwt(), auth.uid(), auth.role(), auth.email(), auth.app_role() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION auth.jwt(), auth.uid(), auth.role(), auth.email(), auth.app_role()
  TO anon, authenticated, service_role;

CREATE TABLE auth.users (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  email text NOT NULL CHECK (email = btrim(email) AND length(email) BETWEEN 3 AND 320),
  password_hash text,
  app_role text NOT NULL DEFAULT 'editor' CHECK (app_role IN ('editor', 'admin')),
  email_confirmed_at timestamptz,
  last_sign_in_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
-- Emails are unique whatever their case.
CREATE UNIQUE INDEX users_email_key ON auth.users (lower(email));

CREATE FUNCTION auth.touch_updated_at() RETURNS trigger
LANGUAGE plpgsql
AS $$ BEGIN NEW.updated_at := now(); RETURN NEW; END $$;

CREATE TRIGGER users_touch_updated_at BEFORE UPDATE ON auth.users
  FOR EACH ROW EXECUTE FUNCTION auth.touch_updated_at();

-- Token signing keys. Kept in the database (not a file) so that every sidecar of a scaled-out
-- deployment signs and verifies with the same keys, and a rotation reaches all of them at once.
-- The long-lived anon and service API keys are minted once per signing key and stored beside it.
CREATE TABLE auth.signing_keys (
  kid text PRIMARY KEY,
  alg text NOT NULL,
  private_jwk jsonb NOT NULL,
  public_jwk jsonb NOT NULL,
  anon_key text NOT NULL,
  service_key text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- PostgREST's db-pre-config: hands it the public JWKS of every signing key, so it accepts tokens
-- from the current and the previous keys. Runs as authenticator; reads only public halves.
CREATE FUNCTION auth.postgrest_pre_config() RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = ''
AS $$
  SELECT set_config(
    'pgrst.jwt_secret',
    jsonb_build_object('keys', coalesce(jsonb_agg(public_jwk ORDER BY created_at), '[]'::jsonb))::text,
    true)
  FROM auth.signing_keys
$$;
REVOKE ALL ON FUNCTION auth.postgrest_pre_config() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION auth.postgrest_pre_config() TO authenticator;

-- migrate:down
DROP SCHEMA auth CASCADE;
