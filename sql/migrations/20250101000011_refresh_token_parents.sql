-- Refresh tokens remember the token they were exchanged for, so the server can tell a client that
-- is one rotation behind (two tabs of one browser spending the same token within moments: benign)
-- from a stale token coming back later (a stolen copy: the family is revoked).

-- migrate:up
ALTER TABLE auth.refresh_tokens ADD COLUMN parent_hash bytea;
CREATE INDEX refresh_tokens_parent_hash_idx ON auth.refresh_tokens (parent_hash);

-- migrate:down
DROP INDEX auth.refresh_tokens_parent_hash_idx;
ALTER TABLE auth.refresh_tokens DROP COLUMN parent_hash;
