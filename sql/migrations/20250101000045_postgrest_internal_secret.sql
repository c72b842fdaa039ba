-- PostgREST trusts one HS256 secret that only Plinth knows, instead of the public JWKS. The
-- sidecar verifies every caller's token (signature, expiry, retired keys) and forwards the same
-- claims to PostgREST signed with this secret: PostgREST then checks a cheap HMAC instead of a
-- second ES256 signature, and a user's token sent to PostgREST directly is refused.
-- Every PostgREST (Plinth's own or an external one) reads the secret through db-pre-config, and
-- every sidecar reads it at start, so all agree without configuration.

-- migrate:up
CREATE TABLE auth.postgrest_secret (
  only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
  -- 256 random bits (two v4 uuids carry 244), hex: at least the 32 characters HS256 needs.
  secret text NOT NULL DEFAULT replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''),
  created_at timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON auth.postgrest_secret FROM PUBLIC;
INSERT INTO auth.postgrest_secret DEFAULT VALUES;

CREATE OR REPLACE FUNCTION auth.postgrest_pre_config() RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = ''
AS $$
  SELECT set_config('pgrst.jwt_secret', secret, true) FROM auth.postgrest_secret
$$;

-- migrate:down
CREATE OR REPLACE FUNCTION auth.postgrest_pre_config() RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = ''
AS $$
  SELECT set_config(
    'pgrst.jwt_secret',
    jsonb_build_object('keys', coalesce(jsonb_agg(public_jwk ORDER BY created_at), '[]'::jsonb))::text,
    true)
  FROM auth.signing_keys
$$;
DROP TABLE auth.postgrest_secret;
