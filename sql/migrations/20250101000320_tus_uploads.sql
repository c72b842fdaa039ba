-- Resumable uploads (TUS 1.0, /storage/v1/upload/resumable). An upload in progress is a row:
-- where it goes (bucket, name, upsert), how long it is, how many bytes are durably stored
-- (upload_offset; the sidecar acknowledges no byte before it is fsync'd or stored in S3 and
-- counted here), and, on S3, the multipart upload holding its parts. The row is the caller's:
-- RLS lets only its creator (for anon-key uploads: the anon key) see, continue or cancel it.
-- The object itself is written as the caller when the last byte arrives, through
-- storage.begin_resumable_blob and storage.link_object, all or nothing.

-- migrate:up
CREATE TABLE storage.tus_uploads (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  bucket_id text NOT NULL,
  name text NOT NULL CHECK (storage.valid_object_name(name)),
  upsert boolean NOT NULL DEFAULT false,
  upload_length bigint NOT NULL CHECK (upload_length >= 0),
  upload_offset bigint NOT NULL DEFAULT 0 CHECK (upload_offset BETWEEN 0 AND upload_length),
  content_type text NOT NULL,
  cache_control text NOT NULL,
  user_metadata jsonb,
  -- The client's Upload-Metadata header, echoed by HEAD.
  metadata_header text NOT NULL DEFAULT '',
  backend text NOT NULL CHECK (backend IN ('disk', 's3')),
  -- S3: the multipart upload, its parts so far [{"n":1,"tag":"…","size":…}] and their bytes.
  s3_upload_id text,
  parts jsonb NOT NULL DEFAULT '[]',
  parts_bytes bigint NOT NULL DEFAULT 0,
  created_by uuid DEFAULT auth.uid(),
  created_at timestamptz NOT NULL DEFAULT now(),
  -- Pushed forward by every PATCH; past it the upload is abandoned and swept.
  expires_at timestamptz NOT NULL
);
CREATE INDEX tus_uploads_expiry_idx ON storage.tus_uploads (expires_at);

ALTER TABLE storage.tus_uploads ENABLE ROW LEVEL SECURITY;
CREATE POLICY tus_uploads_own ON storage.tus_uploads FOR ALL TO authenticated
  USING (created_by = auth.uid()) WITH CHECK (created_by = auth.uid());
CREATE POLICY tus_uploads_anon ON storage.tus_uploads FOR ALL TO anon
  USING (created_by IS NULL) WITH CHECK (created_by IS NULL);
GRANT SELECT, INSERT, DELETE ON storage.tus_uploads TO anon, authenticated, service_role;
GRANT UPDATE (upload_offset, parts, parts_bytes, s3_upload_id, expires_at) ON storage.tus_uploads TO anon, authenticated, service_role;

-- The last step of a resumable upload (as the caller, who can see the upload's row): its bytes,
-- already stored under the upload's id, become a blob awaiting storage.link_object.
CREATE FUNCTION storage.begin_resumable_blob(p_upload uuid) RETURNS uuid
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
DECLARE
  v_id uuid := gen_random_uuid();
  v_backend text;
BEGIN
  SELECT u.backend INTO v_backend FROM storage.tus_uploads u
    WHERE u.id = p_upload AND u.created_by IS NOT DISTINCT FROM auth.uid() AND u.upload_offset = u.upload_length;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'no finished resumable upload % of yours', p_upload USING ERRCODE = '42501';
  END IF;
  INSERT INTO storage.blobs (id, backend, key, charged_to) VALUES (v_id, v_backend, p_upload::text, auth.uid());
  RETURN v_id;
END
$$;
REVOKE ALL ON FUNCTION storage.begin_resumable_blob(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION storage.begin_resumable_blob(uuid) TO anon, authenticated, service_role;

-- migrate:down
DROP FUNCTION storage.begin_resumable_blob(uuid);
DROP TABLE storage.tus_uploads;
