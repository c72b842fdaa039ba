-- A refresh token's successor is derived from it (HMAC under a server-side secret), so a token
-- exchanged twice within the reuse interval yields the same successor both times: concurrent
-- refreshes share one line of tokens instead of forking the session into two that live on.

-- migrate:up
INSERT INTO auth.secrets (name, value)
VALUES ('refresh_token_successor', sha256(uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid())));

-- migrate:down
DELETE FROM auth.secrets WHERE name = 'refresh_token_successor';
