-- A refresh token's successor is derived from it (HMAC under a server-side secret), so a token
-- exchanged twice within the reuse interval yields the same successor both times: concurrent
-- refreshes share one line of tokens instead of forking the session into two that live on.

-- migrate:up
-- Server-side secrets of the accounts feature; only the owner connection reads them.
CREATE TABLE auth.secrets (
  name text PRIMARY KEY,
  value bytea NOT NULL CHECK (length(value) >= 32)
);
REVOKE ALL ON auth.secrets FROM PUBLIC;
-- gen_random_uuid() draws from the server's strong random source: 244 random bits here.
INSERT INTO auth.secrets (name, value)
VALUES ('refresh_token_successor', sha256(uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid())));

-- migrate:down
DROP TABLE auth.secrets;
