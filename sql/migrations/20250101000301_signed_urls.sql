-- Signed URLs for bucket objects. Unlike Supabase's (self-contained JWTs, valid until they
-- expire), each is a row: created as the caller (so RLS decides whether the caller may hand out
-- the object), revocable by deleting the row, and ended with the object: a download URL names the
-- version it was signed for, so deleting or overwriting the object ends every URL to it.
-- Only a hash of the URL's token is kept.

-- migrate:up
CREATE TABLE storage.signed_urls (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  token_hash text NOT NULL UNIQUE CHECK (token_hash ~ '^[0-9a-f]{64}$'),
  kind text NOT NULL CHECK (kind IN ('download', 'upload')),
  bucket_id text NOT NULL REFERENCES storage.buckets (id) ON DELETE CASCADE,
  name text NOT NULL,
  -- Download URLs: the object and the version (blob) signed; gone or replaced → the URL ends.
  object_id uuid REFERENCES storage.objects (id) ON DELETE CASCADE,
  blob_id uuid,
  -- Upload URLs: whether the upload may replace an existing object.
  upsert boolean NOT NULL DEFAULT false,
  created_by uuid DEFAULT auth.uid() REFERENCES auth.users (id) ON DELETE CASCADE,
  -- The role the URL was created under: an upload through it is written as that caller.
  created_role text NOT NULL DEFAULT current_user CHECK (created_role IN ('anon', 'authenticated', 'service_role')),
  expires_at timestamptz NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  CHECK (kind = 'upload' OR (object_id IS NOT NULL AND blob_id IS NOT NULL))
);
CREATE INDEX signed_urls_object_idx ON storage.signed_urls (object_id);
CREATE INDEX signed_urls_expiry_idx ON storage.signed_urls (expires_at);

ALTER TABLE storage.signed_urls ENABLE ROW LEVEL SECURITY;
-- A signed-in user sees and revokes the URLs they created; the anon key may create URLs (to
-- objects it can read) but revokes none.
CREATE POLICY signed_urls_own ON storage.signed_urls FOR ALL TO authenticated
  USING (created_by = auth.uid()) WITH CHECK (created_by = auth.uid());
CREATE POLICY signed_urls_anon_create ON storage.signed_urls FOR INSERT TO anon WITH CHECK (created_by IS NULL);
GRANT SELECT, INSERT, DELETE ON storage.signed_urls TO anon, authenticated, service_role;

-- migrate:down
DROP TABLE storage.signed_urls;
