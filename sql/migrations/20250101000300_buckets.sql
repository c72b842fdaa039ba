-- Buckets on the Supabase Storage API. Supabase's contract names its bucket object table
-- storage.objects, so Plinth's own store of byte versions (backend, opaque key, size, sha256),
-- which had that name, becomes storage.blobs; every function that reads it is re-created below
-- with the new name (plpgsql and SQL bodies are stored as text, a rename does not reach them).
--
-- storage.buckets and storage.objects have Supabase's columns and RLS: the sidecar runs every
-- bucket and object statement as the caller, so policies (the defaults below, and any an app
-- migration adds, e.g. on storage.foldername(name)) decide. An object row points at the blob
-- holding its current bytes (blob_id); callers can neither write nor forge that link: it is
-- set only by storage.link_object, for a row the caller itself wrote in the same transaction.

-- migrate:up
ALTER TABLE storage.objects RENAME TO blobs;
ALTER INDEX storage.objects_pkey RENAME TO blobs_pkey;
ALTER INDEX storage.objects_key_key RENAME TO blobs_key_key;
ALTER INDEX storage.objects_writing_idx RENAME TO blobs_writing_idx;
ALTER INDEX storage.objects_user_usage_idx RENAME TO blobs_user_usage_idx;

CREATE OR REPLACE FUNCTION storage.begin_upload(p_backend text) RETURNS uuid
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
DECLARE
  v_id uuid := gen_random_uuid();
BEGIN
  IF auth.uid() IS NULL THEN
    RAISE EXCEPTION 'storing a file needs a signed-in user''s token' USING ERRCODE = '42501';
  END IF;
  INSERT INTO storage.blobs (id, backend, key, owner_id) VALUES (v_id, p_backend, v_id::text, auth.uid());
  RETURN v_id;
END
$$;

CREATE OR REPLACE FUNCTION storage.commit_file(
  p_object uuid, p_path text, p_description text, p_size bigint, p_sha256 text, p_content_type text
) RETURNS uuid
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
DECLARE
  v_file uuid;
BEGIN
  UPDATE storage.blobs SET state = 'ready', size = p_size, sha256 = p_sha256, content_type = p_content_type
    WHERE id = p_object AND owner_id = auth.uid() AND state = 'writing';
  IF NOT FOUND THEN
    RAISE EXCEPTION 'the upload''s reservation expired before it finished; raise PLINTH_SWEEP_AGE' USING ERRCODE = '55000';
  END IF;
  INSERT INTO public.files AS f (owner_id, path, description, size, content_type, sha256)
    VALUES (auth.uid(), p_path, p_description, p_size, p_content_type, p_sha256)
    ON CONFLICT (owner_id, path) DO UPDATE SET
      description = coalesce(excluded.description, f.description),
      size = excluded.size, content_type = excluded.content_type, sha256 = excluded.sha256,
      updated_at = now()
    RETURNING f.id INTO v_file;
  INSERT INTO storage.file_links (file_id, object_id) VALUES (v_file, p_object)
    ON CONFLICT (file_id) DO UPDATE SET object_id = excluded.object_id;
  RETURN v_file;
END
$$;

CREATE OR REPLACE FUNCTION storage.find_file(p_path text)
RETURNS TABLE (file_id uuid, path text, key text, backend text, size bigint, sha256 text, content_type text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = ''
AS $$
  SELECT f.id, f.path, o.key, o.backend, o.size, o.sha256, o.content_type
  FROM public.files f
  JOIN storage.file_links l ON l.file_id = f.id
  JOIN storage.blobs o ON o.id = l.object_id
  WHERE f.owner_id = auth.uid() AND f.path = p_path
$$;

CREATE OR REPLACE FUNCTION storage.commit_entity_file(
  p_object uuid, p_table text, p_row text, p_field text, p_filename text, p_metadata jsonb,
  p_size bigint, p_sha256 text, p_content_type text
) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
BEGIN
  IF NOT storage.entity_row_written_now(p_table, p_row, p_field, p_filename, NULL) THEN
    RAISE EXCEPTION 'attaching a file to a row needs an update of that row''s field by the caller first'
      USING ERRCODE = '42501';
  END IF;
  UPDATE storage.blobs SET state = 'ready', size = p_size, sha256 = p_sha256, content_type = p_content_type
    WHERE id = p_object AND owner_id IS NULL AND state = 'writing';
  IF NOT FOUND THEN
    RAISE EXCEPTION 'the upload''s reservation expired before it finished; raise PLINTH_SWEEP_AGE' USING ERRCODE = '55000';
  END IF;
  INSERT INTO storage.entity_files AS e (table_name, row_id, field, filename, object_id, metadata)
    VALUES (p_table, p_row, p_field, p_filename, p_object, p_metadata)
    ON CONFLICT (table_name, row_id, field) DO UPDATE SET
      filename = excluded.filename, object_id = excluded.object_id, metadata = excluded.metadata, updated_at = now();
END
$$;

CREATE OR REPLACE FUNCTION storage.find_entity_file(p_table text, p_row text, p_field text, p_filename text)
RETURNS TABLE (key text, backend text, size bigint, sha256 text, content_type text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = ''
AS $$
  SELECT o.key, o.backend, o.size, o.sha256, o.content_type
  FROM storage.entity_files e JOIN storage.blobs o ON o.id = e.object_id
  WHERE e.table_name = p_table AND e.row_id = p_row AND e.field = p_field AND e.filename = p_filename
$$;

CREATE OR REPLACE FUNCTION storage.begin_entity_upload(p_backend text) RETURNS uuid
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
DECLARE
  v_id uuid := gen_random_uuid();
BEGIN
  INSERT INTO storage.blobs (id, backend, key, charged_to) VALUES (v_id, p_backend, v_id::text, auth.uid());
  RETURN v_id;
END
$$;

CREATE OR REPLACE FUNCTION storage.user_usage(p_user uuid) RETURNS bigint
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = ''
AS $$
  SELECT coalesce(sum(o.size), 0)::bigint FROM storage.blobs o
  WHERE coalesce(o.charged_to, o.owner_id) = p_user AND o.state = 'ready'
    AND NOT EXISTS (SELECT 1 FROM storage.deletions d WHERE d.object_id = o.id)
$$;

-- Supabase's path helpers, for policies: storage.foldername('a/b/c.png') = {a,b},
-- storage.filename(...) = 'c.png', storage.extension(...) = 'png'.
CREATE FUNCTION storage.foldername(name text) RETURNS text[]
LANGUAGE sql IMMUTABLE SET search_path = ''
AS $$ SELECT (pg_catalog.string_to_array(name, '/'))[1:pg_catalog.array_length(pg_catalog.string_to_array(name, '/'), 1) - 1] $$;
CREATE FUNCTION storage.filename(name text) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = ''
AS $$ SELECT (pg_catalog.string_to_array(name, '/'))[pg_catalog.array_length(pg_catalog.string_to_array(name, '/'), 1)] $$;
CREATE FUNCTION storage.extension(name text) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = ''
AS $$ SELECT CASE WHEN storage.filename(name) LIKE '%.%' THEN pg_catalog.reverse(pg_catalog.split_part(pg_catalog.reverse(storage.filename(name)), '.', 1)) ELSE '' END $$;
GRANT EXECUTE ON FUNCTION storage.foldername(text), storage.filename(text), storage.extension(text) TO anon, authenticated, service_role;

-- Bucket ids appear in URL paths (/storage/v1/object/<bucket>/<name>): the characters Supabase
-- allows, minus the route words that would shadow a bucket of that name.
CREATE TABLE storage.buckets (
  id text PRIMARY KEY CHECK (
    id ~ '^[A-Za-z0-9_.!*''()& $@=;:+,?-]{1,100}$' AND id NOT IN ('.', '..')
    AND id NOT IN ('public', 'authenticated', 'sign', 'info', 'list', 'list-v2', 'move', 'copy', 'upload')),
  name text NOT NULL UNIQUE,
  owner uuid DEFAULT auth.uid() REFERENCES auth.users (id) ON DELETE SET NULL,
  public boolean NOT NULL DEFAULT false,
  file_size_limit bigint CHECK (file_size_limit > 0),
  allowed_mime_types text[],
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  CHECK (name = id)
);

-- Object names are keys inside a bucket, never filesystem paths; still, no traversal-shaped name
-- is stored, so no client that maps names onto folders can be led outside one.
CREATE FUNCTION storage.valid_object_name(name text) RETURNS boolean
LANGUAGE sql IMMUTABLE SET search_path = ''
AS $$
  SELECT pg_catalog.octet_length(name) BETWEEN 1 AND 1024
    AND name !~ '(^|/)\.\.?(/|$)' AND name !~ '^/' AND name !~ '//' AND name !~ '/$'
    AND name !~ '[\x01-\x1f\x7f\\]'
$$;

CREATE TABLE storage.objects (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  bucket_id text NOT NULL REFERENCES storage.buckets (id),
  name text NOT NULL CHECK (storage.valid_object_name(name)),
  owner uuid DEFAULT auth.uid(),
  owner_id text DEFAULT auth.uid()::text,
  -- Supabase's shape: {eTag, size, mimetype, cacheControl, lastModified, contentLength, httpStatusCode}.
  metadata jsonb,
  user_metadata jsonb,
  version text,
  path_tokens text[] GENERATED ALWAYS AS (pg_catalog.string_to_array(name, '/')) STORED,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  last_accessed_at timestamptz NOT NULL DEFAULT now(),
  -- The blob with the current bytes; set by storage.link_object only (no caller holds a grant on it).
  blob_id uuid UNIQUE REFERENCES storage.blobs (id),
  UNIQUE (bucket_id, name)
);
CREATE INDEX objects_name_prefix_idx ON storage.objects (bucket_id, name text_pattern_ops);

-- Whether the row version with this xmin was written by the current transaction (or one of its
-- savepoints): a visible version whose xmin is still in progress can only be our own.
CREATE FUNCTION storage.written_now(p_xmin bigint) RETURNS boolean
LANGUAGE plpgsql STABLE SET search_path = ''
AS $$
DECLARE
  v_top bigint := pg_catalog.pg_current_xact_id()::text::bigint;
  v_full bigint;
BEGIN
  IF p_xmin IS NULL THEN
    RETURN false;
  END IF;
  v_full := v_top + (p_xmin - v_top % 4294967296 + 4294967296) % 4294967296;
  BEGIN
    RETURN pg_catalog.pg_xact_status(v_full::text::xid8) = 'in progress';
  EXCEPTION WHEN OTHERS THEN
    RETURN false;
  END;
END
$$;
REVOKE ALL ON FUNCTION storage.written_now(bigint) FROM PUBLIC;

-- Every object row holds bytes once its transaction commits.
CREATE FUNCTION storage.object_is_linked() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM storage.objects WHERE id = NEW.id AND blob_id IS NULL) THEN
    RAISE EXCEPTION 'object % in bucket % has no stored bytes: objects are written through the Storage API', NEW.name, NEW.bucket_id
      USING ERRCODE = '23502';
  END IF;
  RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION storage.object_is_linked() FROM PUBLIC;
CREATE CONSTRAINT TRIGGER objects_linked AFTER INSERT OR UPDATE ON storage.objects
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION storage.object_is_linked();

-- A deleted object, or one whose bytes were replaced, queues its former blob for the sweeper.
CREATE FUNCTION storage.queue_replaced_blob() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
BEGIN
  IF OLD.blob_id IS NOT NULL AND (TG_OP = 'DELETE' OR OLD.blob_id IS DISTINCT FROM NEW.blob_id) THEN
    INSERT INTO storage.deletions (object_id) VALUES (OLD.blob_id) ON CONFLICT DO NOTHING;
    PERFORM pg_notify('plinth_storage', 'delete');
  END IF;
  RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION storage.queue_replaced_blob() FROM PUBLIC;
CREATE TRIGGER objects_queue AFTER UPDATE OF blob_id OR DELETE ON storage.objects
  FOR EACH ROW EXECUTE FUNCTION storage.queue_replaced_blob();

-- Policy helpers, with the owner's rights so a policy on objects need not see the bucket row.
CREATE FUNCTION storage.bucket_is_public(p_bucket text) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = ''
AS $$ SELECT coalesce((SELECT b.public FROM storage.buckets b WHERE b.id = p_bucket), false) $$;
CREATE FUNCTION storage.bucket_owned_by_caller(p_bucket text) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = ''
AS $$ SELECT auth.uid() IS NOT NULL AND EXISTS (SELECT 1 FROM storage.buckets b WHERE b.id = p_bucket AND b.owner = auth.uid()) $$;
REVOKE ALL ON FUNCTION storage.bucket_is_public(text), storage.bucket_owned_by_caller(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION storage.bucket_is_public(text), storage.bucket_owned_by_caller(text) TO anon, authenticated, service_role;

-- The defaults, which need no policy writing: a signed-in user may create a bucket and owns it;
-- the owner manages the bucket and its objects; anyone reads a public bucket and its objects.
-- App migrations add their own (permissive) policies beside these. service_role bypasses RLS.
ALTER TABLE storage.buckets ENABLE ROW LEVEL SECURITY;
CREATE POLICY buckets_read ON storage.buckets FOR SELECT TO anon, authenticated USING (public OR owner = auth.uid());
CREATE POLICY buckets_create ON storage.buckets FOR INSERT TO authenticated WITH CHECK (owner = auth.uid());
CREATE POLICY buckets_update ON storage.buckets FOR UPDATE TO authenticated USING (owner = auth.uid()) WITH CHECK (owner = auth.uid());
CREATE POLICY buckets_delete ON storage.buckets FOR DELETE TO authenticated USING (owner = auth.uid());
GRANT SELECT, INSERT, DELETE ON storage.buckets TO anon, authenticated, service_role;
GRANT UPDATE (public, file_size_limit, allowed_mime_types, updated_at) ON storage.buckets TO anon, authenticated, service_role;

ALTER TABLE storage.objects ENABLE ROW LEVEL SECURITY;
CREATE POLICY objects_read ON storage.objects FOR SELECT TO anon, authenticated
  USING (storage.bucket_is_public(bucket_id) OR storage.bucket_owned_by_caller(bucket_id));
CREATE POLICY objects_create ON storage.objects FOR INSERT TO authenticated WITH CHECK (storage.bucket_owned_by_caller(bucket_id));
CREATE POLICY objects_update ON storage.objects FOR UPDATE TO authenticated
  USING (storage.bucket_owned_by_caller(bucket_id)) WITH CHECK (storage.bucket_owned_by_caller(bucket_id));
CREATE POLICY objects_delete ON storage.objects FOR DELETE TO authenticated USING (storage.bucket_owned_by_caller(bucket_id));
GRANT SELECT, DELETE ON storage.objects TO anon, authenticated, service_role;
GRANT INSERT (id, bucket_id, name, owner, owner_id, metadata, user_metadata, version, updated_at, last_accessed_at)
  ON storage.objects TO anon, authenticated, service_role;
GRANT UPDATE (bucket_id, name, owner, owner_id, metadata, user_metadata, version, updated_at, last_accessed_at)
  ON storage.objects TO anon, authenticated, service_role;

-- Upload, step 1 (as the caller, after its right to write the row was tested): the bucket's
-- limits, and a new blob reserved before any byte is written, charged to the caller.
CREATE FUNCTION storage.begin_object_upload(p_backend text, p_bucket text)
RETURNS TABLE (blob_id uuid, file_size_limit bigint, allowed_mime_types text[])
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
DECLARE
  v_id uuid := gen_random_uuid();
BEGIN
  SELECT b.file_size_limit, b.allowed_mime_types INTO file_size_limit, allowed_mime_types FROM storage.buckets b WHERE b.id = p_bucket;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'Bucket not found' USING ERRCODE = 'P0002';
  END IF;
  INSERT INTO storage.blobs (id, backend, key, charged_to) VALUES (v_id, p_backend, v_id::text, auth.uid());
  blob_id := v_id;
  RETURN NEXT;
END
$$;

-- Upload, last step (as the caller): the caller has just written the object's row (RLS allowed
-- it); its bytes are stored in p_blob. Makes them the object's current bytes; the old blob is queued.
CREATE FUNCTION storage.link_object(p_bucket text, p_name text, p_blob uuid, p_size bigint, p_sha256 text, p_content_type text)
RETURNS uuid
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
DECLARE
  v_id uuid;
  v_xmin bigint;
BEGIN
  SELECT o.id, o.xmin::text::bigint INTO v_id, v_xmin FROM storage.objects o WHERE o.bucket_id = p_bucket AND o.name = p_name;
  IF v_id IS NULL OR NOT storage.written_now(v_xmin) THEN
    RAISE EXCEPTION 'storing an object''s bytes needs a write of its row by the caller first' USING ERRCODE = '42501';
  END IF;
  UPDATE storage.blobs SET state = 'ready', size = p_size, sha256 = p_sha256, content_type = p_content_type
    WHERE id = p_blob AND state = 'writing' AND owner_id IS NULL AND charged_to IS NOT DISTINCT FROM auth.uid();
  IF NOT FOUND THEN
    RAISE EXCEPTION 'the upload''s reservation expired before it finished; raise PLINTH_SWEEP_AGE' USING ERRCODE = '55000';
  END IF;
  UPDATE storage.objects SET blob_id = p_blob WHERE id = v_id;
  RETURN v_id;
END
$$;

-- Where an object's bytes are, for an object the caller has just read through RLS.
CREATE FUNCTION storage.blob_of(p_blob uuid) RETURNS TABLE (key text, size bigint, sha256 text, content_type text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = ''
AS $$ SELECT b.key, b.size, b.sha256, b.content_type FROM storage.blobs b WHERE b.id = p_blob AND b.state = 'ready' $$;

REVOKE ALL ON FUNCTION storage.begin_object_upload(text, text), storage.link_object(text, text, uuid, bigint, text, text),
  storage.blob_of(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION storage.begin_object_upload(text, text), storage.link_object(text, text, uuid, bigint, text, text),
  storage.blob_of(uuid) TO anon, authenticated, service_role;

-- A bucket's limits, for an upload checked before its first byte (the caller need not see the bucket).
CREATE FUNCTION storage.bucket_limits(p_bucket text) RETURNS TABLE (file_size_limit bigint, allowed_mime_types text[])
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = ''
AS $$
BEGIN
  RETURN QUERY SELECT b.file_size_limit, b.allowed_mime_types FROM storage.buckets b WHERE b.id = p_bucket;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'Bucket not found' USING ERRCODE = 'P0002';
  END IF;
END
$$;
REVOKE ALL ON FUNCTION storage.bucket_limits(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION storage.bucket_limits(text) TO anon, authenticated, service_role;

-- migrate:down
DROP FUNCTION storage.bucket_limits(text);
DROP TABLE storage.objects;
DROP TABLE storage.buckets;
DROP FUNCTION storage.begin_object_upload(text, text);
DROP FUNCTION storage.link_object(text, text, uuid, bigint, text, text);
DROP FUNCTION storage.blob_of(uuid);
DROP FUNCTION storage.bucket_is_public(text);
DROP FUNCTION storage.bucket_owned_by_caller(text);
DROP FUNCTION storage.queue_replaced_blob();
DROP FUNCTION storage.object_is_linked();
DROP FUNCTION storage.written_now(bigint);
DROP FUNCTION storage.valid_object_name(text);
DROP FUNCTION storage.extension(text);
DROP FUNCTION storage.filename(text);
DROP FUNCTION storage.foldername(text);
ALTER TABLE storage.blobs RENAME TO objects;
ALTER INDEX storage.blobs_pkey RENAME TO objects_pkey;
ALTER INDEX storage.blobs_key_key RENAME TO objects_key_key;
ALTER INDEX storage.blobs_writing_idx RENAME TO objects_writing_idx;
ALTER INDEX storage.blobs_user_usage_idx RENAME TO objects_user_usage_idx;

CREATE OR REPLACE FUNCTION storage.begin_upload(p_backend text) RETURNS uuid
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
DECLARE
  v_id uuid := gen_random_uuid();
BEGIN
  IF auth.uid() IS NULL THEN
    RAISE EXCEPTION 'storing a file needs a signed-in user''s token' USING ERRCODE = '42501';
  END IF;
  INSERT INTO storage.objects (id, backend, key, owner_id) VALUES (v_id, p_backend, v_id::text, auth.uid());
  RETURN v_id;
END
$$;

CREATE OR REPLACE FUNCTION storage.commit_file(
  p_object uuid, p_path text, p_description text, p_size bigint, p_sha256 text, p_content_type text
) RETURNS uuid
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
DECLARE
  v_file uuid;
BEGIN
  UPDATE storage.objects SET state = 'ready', size = p_size, sha256 = p_sha256, content_type = p_content_type
    WHERE id = p_object AND owner_id = auth.uid() AND state = 'writing';
  IF NOT FOUND THEN
    RAISE EXCEPTION 'the upload''s reservation expired before it finished; raise PLINTH_SWEEP_AGE' USING ERRCODE = '55000';
  END IF;
  INSERT INTO public.files AS f (owner_id, path, description, size, content_type, sha256)
    VALUES (auth.uid(), p_path, p_description, p_size, p_content_type, p_sha256)
    ON CONFLICT (owner_id, path) DO UPDATE SET
      description = coalesce(excluded.description, f.description),
      size = excluded.size, content_type = excluded.content_type, sha256 = excluded.sha256,
      updated_at = now()
    RETURNING f.id INTO v_file;
  INSERT INTO storage.file_links (file_id, object_id) VALUES (v_file, p_object)
    ON CONFLICT (file_id) DO UPDATE SET object_id = excluded.object_id;
  RETURN v_file;
END
$$;

CREATE OR REPLACE FUNCTION storage.find_file(p_path text)
RETURNS TABLE (file_id uuid, path text, key text, backend text, size bigint, sha256 text, content_type text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = ''
AS $$
  SELECT f.id, f.path, o.key, o.backend, o.size, o.sha256, o.content_type
  FROM public.files f
  JOIN storage.file_links l ON l.file_id = f.id
  JOIN storage.objects o ON o.id = l.object_id
  WHERE f.owner_id = auth.uid() AND f.path = p_path
$$;

CREATE OR REPLACE FUNCTION storage.commit_entity_file(
  p_object uuid, p_table text, p_row text, p_field text, p_filename text, p_metadata jsonb,
  p_size bigint, p_sha256 text, p_content_type text
) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
BEGIN
  IF NOT storage.entity_row_written_now(p_table, p_row, p_field, p_filename, NULL) THEN
    RAISE EXCEPTION 'attaching a file to a row needs an update of that row''s field by the caller first'
      USING ERRCODE = '42501';
  END IF;
  UPDATE storage.objects SET state = 'ready', size = p_size, sha256 = p_sha256, content_type = p_content_type
    WHERE id = p_object AND owner_id IS NULL AND state = 'writing';
  IF NOT FOUND THEN
    RAISE EXCEPTION 'the upload''s reservation expired before it finished; raise PLINTH_SWEEP_AGE' USING ERRCODE = '55000';
  END IF;
  INSERT INTO storage.entity_files AS e (table_name, row_id, field, filename, object_id, metadata)
    VALUES (p_table, p_row, p_field, p_filename, p_object, p_metadata)
    ON CONFLICT (table_name, row_id, field) DO UPDATE SET
      filename = excluded.filename, object_id = excluded.object_id, metadata = excluded.metadata, updated_at = now();
END
$$;

CREATE OR REPLACE FUNCTION storage.find_entity_file(p_table text, p_row text, p_field text, p_filename text)
RETURNS TABLE (key text, backend text, size bigint, sha256 text, content_type text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = ''
AS $$
  SELECT o.key, o.backend, o.size, o.sha256, o.content_type
  FROM storage.entity_files e JOIN storage.objects o ON o.id = e.object_id
  WHERE e.table_name = p_table AND e.row_id = p_row AND e.field = p_field AND e.filename = p_filename
$$;

CREATE OR REPLACE FUNCTION storage.begin_entity_upload(p_backend text) RETURNS uuid
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
DECLARE
  v_id uuid := gen_random_uuid();
BEGIN
  INSERT INTO storage.objects (id, backend, key, charged_to) VALUES (v_id, p_backend, v_id::text, auth.uid());
  RETURN v_id;
END
$$;

CREATE OR REPLACE FUNCTION storage.user_usage(p_user uuid) RETURNS bigint
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = ''
AS $$
  SELECT coalesce(sum(o.size), 0)::bigint FROM storage.objects o
  WHERE coalesce(o.charged_to, o.owner_id) = p_user AND o.state = 'ready'
    AND NOT EXISTS (SELECT 1 FROM storage.deletions d WHERE d.object_id = o.id)
$$;
