-- File storage. public.files is the user-visible metadata (PostgREST, RLS); the private `storage`
-- schema records where bytes live and which stored objects await deletion. Bytes themselves live
-- on disk or in S3 under opaque keys (the object id), never under a client-supplied name.
-- The sidecar writes every version under a new object, switches the link in one transaction,
-- and removes superseded or deleted objects after commit (queue below + NOTIFY plinth_storage).

-- migrate:up
CREATE SCHEMA storage;
REVOKE ALL ON SCHEMA storage FROM PUBLIC;
-- The API roles may call the few SECURITY DEFINER functions below; they can read no table here.
GRANT USAGE ON SCHEMA storage TO anon, authenticated, service_role;

-- One stored object = one immutable version of some file's bytes.
-- 'writing' objects are reserved before the first byte is stored, so bytes left by an aborted or
-- crashed upload are always findable (and swept once older than PLINTH_SWEEP_AGE).
CREATE TABLE storage.objects (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  backend text NOT NULL CHECK (backend IN ('disk', 's3')),
  -- Opaque: derived from the id by the sidecar, never from a client-supplied name.
  key text NOT NULL UNIQUE,
  state text NOT NULL DEFAULT 'writing' CHECK (state IN ('writing', 'ready')),
  -- The user who reserved it (store_file); null for entity-linked uploads.
  owner_id uuid,
  size bigint CHECK (size >= 0),
  sha256 text CHECK (sha256 ~ '^[0-9a-f]{64}$'),
  content_type text,
  created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  CHECK (state = 'writing' OR (size IS NOT NULL AND sha256 IS NOT NULL AND content_type IS NOT NULL))
);
CREATE INDEX objects_writing_idx ON storage.objects (created_at) WHERE state = 'writing';

-- Objects whose bytes must go: filled by triggers when a file row is deleted or its object replaced.
CREATE TABLE storage.deletions (
  object_id uuid PRIMARY KEY REFERENCES storage.objects (id) ON DELETE CASCADE,
  queued_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- The user-visible file metadata: one row per (owner, path).
CREATE TABLE public.files (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  owner_id uuid NOT NULL DEFAULT auth.uid() REFERENCES auth.users (id) ON DELETE CASCADE,
  path text NOT NULL CHECK (octet_length(path) BETWEEN 1 AND 1024),
  description text,
  size bigint NOT NULL CHECK (size >= 0),
  content_type text NOT NULL,
  sha256 text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (owner_id, path)
);
ALTER TABLE public.files ENABLE ROW LEVEL SECURITY;
-- Owners see their own rows; an admin (app_role claim) sees every row's metadata. Downloads are
-- decided by storage.find_file below, which only ever returns the caller's own file.
CREATE POLICY files_select ON public.files FOR SELECT TO authenticated
  USING (owner_id = auth.uid() OR auth.app_role() = 'admin');
CREATE POLICY files_update ON public.files FOR UPDATE TO authenticated
  USING (owner_id = auth.uid()) WITH CHECK (owner_id = auth.uid());
CREATE POLICY files_delete ON public.files FOR DELETE TO authenticated
  USING (owner_id = auth.uid());
-- Rows are created only by POST /rpc/store_file (storage.commit_file); PATCH may change the description.
GRANT SELECT, DELETE ON public.files TO authenticated;
GRANT UPDATE (description) ON public.files TO authenticated;

-- Which object holds each file's current bytes. Kept apart from public.files so the opaque key
-- never appears in the API; deleting a files row cascades here and queues the object.
CREATE TABLE storage.file_links (
  file_id uuid PRIMARY KEY REFERENCES public.files (id) ON DELETE CASCADE,
  object_id uuid NOT NULL UNIQUE REFERENCES storage.objects (id)
);

-- Entity-linked files: the file in field `field` of row `row_id` of public.`table_name`.
-- The field itself holds the filename; this records where its bytes are.
CREATE TABLE storage.entity_files (
  table_name text NOT NULL,
  row_id text NOT NULL,
  field text NOT NULL,
  filename text NOT NULL,
  object_id uuid NOT NULL UNIQUE REFERENCES storage.objects (id),
  metadata jsonb,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (table_name, row_id, field)
);

CREATE FUNCTION storage.queue_replaced_object() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
BEGIN
  IF TG_OP = 'DELETE' OR OLD.object_id IS DISTINCT FROM NEW.object_id THEN
    INSERT INTO storage.deletions (object_id) VALUES (OLD.object_id) ON CONFLICT DO NOTHING;
    -- Delivered at commit: the sidecar removes the bytes only once the switch is durable.
    PERFORM pg_notify('plinth_storage', 'delete');
  END IF;
  RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION storage.queue_replaced_object() FROM PUBLIC;

CREATE TRIGGER file_links_queue AFTER UPDATE OF object_id OR DELETE ON storage.file_links
  FOR EACH ROW EXECUTE FUNCTION storage.queue_replaced_object();
CREATE TRIGGER entity_files_queue AFTER UPDATE OF object_id OR DELETE ON storage.entity_files
  FOR EACH ROW EXECUTE FUNCTION storage.queue_replaced_object();

-- POST /rpc/store_file, step 1 (run as the caller): reserve a new object before any byte is written.
CREATE FUNCTION storage.begin_upload(p_backend text) RETURNS uuid
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

-- POST /rpc/store_file, step 2 (run as the caller): the bytes are stored; make them the current
-- version of the caller's file at p_path, in one transaction. Keeps the file's id on overwrite.
CREATE FUNCTION storage.commit_file(
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

-- GET /rpc/retrieve_file (run as the caller): the caller's OWN file only. RLS would show an admin
-- every row; downloads are stricter on purpose (an admin sees others' files but cannot download them).
CREATE FUNCTION storage.find_file(p_path text)
RETURNS TABLE (file_id uuid, path text, key text, backend text, size bigint, sha256 text, content_type text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = ''
AS $$
  SELECT f.id, f.path, o.key, o.backend, o.size, o.sha256, o.content_type
  FROM public.files f
  JOIN storage.file_links l ON l.file_id = f.id
  JOIN storage.objects o ON o.id = l.object_id
  WHERE f.owner_id = auth.uid() AND f.path = p_path
$$;

-- Entity-linked uploads are authorised by an UPDATE of the entity row run as the caller in the
-- same transaction (the sidecar does it first); these functions only record where bytes are.
CREATE FUNCTION storage.commit_entity_file(
  p_object uuid, p_table text, p_row text, p_field text, p_filename text, p_metadata jsonb,
  p_size bigint, p_sha256 text, p_content_type text
) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
BEGIN
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

CREATE FUNCTION storage.find_entity_file(p_table text, p_row text, p_field text, p_filename text)
RETURNS TABLE (key text, backend text, size bigint, sha256 text, content_type text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = ''
AS $$
  SELECT o.key, o.backend, o.size, o.sha256, o.content_type
  FROM storage.entity_files e JOIN storage.objects o ON o.id = e.object_id
  WHERE e.table_name = p_table AND e.row_id = p_row AND e.field = p_field AND e.filename = p_filename
$$;

-- Called after the caller proved (in the same transaction) that they may DELETE the row:
-- forgets the file (its object is queued by the trigger) and clears the field if it still names it.
CREATE FUNCTION storage.delete_entity_file(p_table text, p_row text, p_field text, p_filename text)
RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
DECLARE
  v_id_type text;
BEGIN
  SELECT format_type(a.atttypid, a.atttypmod) INTO STRICT v_id_type
    FROM pg_catalog.pg_attribute a
    WHERE a.attrelid = format('public.%I', p_table)::regclass AND a.attname = 'id' AND NOT a.attisdropped;
  DELETE FROM storage.entity_files
    WHERE table_name = p_table AND row_id = p_row AND field = p_field AND filename = p_filename;
  IF NOT FOUND THEN
    RETURN false;
  END IF;
  EXECUTE format('UPDATE public.%I SET %I = NULL WHERE id = $1::%s AND %I = $2', p_table, p_field, v_id_type, p_field)
    USING p_row, p_filename;
  RETURN true;
END
$$;

REVOKE ALL ON FUNCTION storage.begin_upload(text), storage.commit_file(uuid, text, text, bigint, text, text),
  storage.find_file(text), storage.commit_entity_file(uuid, text, text, text, text, jsonb, bigint, text, text),
  storage.find_entity_file(text, text, text, text), storage.delete_entity_file(text, text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION storage.begin_upload(text), storage.commit_file(uuid, text, text, bigint, text, text),
  storage.find_file(text) TO authenticated;
GRANT EXECUTE ON FUNCTION storage.commit_entity_file(uuid, text, text, text, text, jsonb, bigint, text, text),
  storage.find_entity_file(text, text, text, text), storage.delete_entity_file(text, text, text, text)
  TO anon, authenticated, service_role;

-- migrate:down
DROP TABLE storage.file_links;
DROP TABLE public.files;
DROP SCHEMA storage CASCADE;
