-- The entity-file functions run with their owner's rights, so each checks for itself that the
-- caller did, in this very transaction and under RLS, the write that authorises it; they no
-- longer rely on the sidecar having run that write first. A row version written by the current
-- transaction carries its id in xmin: only the caller's own UPDATE (which RLS allowed) puts it there.

-- migrate:up
-- True when row p_row of public.p_table was written by the current transaction (or one of its
-- savepoints) and its p_field now holds p_value (null: anything but p_not_value). A visible row
-- version whose xmin is still in progress can only be this transaction's own.
CREATE FUNCTION storage.entity_row_written_now(p_table text, p_row text, p_field text, p_value text, p_not_value text)
RETURNS boolean
LANGUAGE plpgsql SET search_path = ''
AS $$
DECLARE
  v_id_type text;
  v_xmin bigint;
  v_top bigint := pg_catalog.pg_current_xact_id()::text::bigint;
  v_full bigint;
BEGIN
  SELECT format_type(a.atttypid, a.atttypmod) INTO v_id_type
    FROM pg_catalog.pg_attribute a
    WHERE a.attrelid = format('public.%I', p_table)::regclass AND a.attname = 'id' AND NOT a.attisdropped;
  IF v_id_type IS NULL THEN
    RETURN false;
  END IF;
  EXECUTE format(
    'SELECT xmin::text::bigint FROM public.%I WHERE id = $1::%s'
    ' AND ($2::text IS NULL OR %I::text = $2) AND ($3::text IS NULL OR %I::text IS DISTINCT FROM $3)',
    p_table, v_id_type, p_field, p_field)
    INTO v_xmin USING p_row, p_value, p_not_value;
  IF v_xmin IS NULL THEN
    RETURN false;
  END IF;
  -- xmin is 32 bits: widen it next to this transaction's own id, which is at most its savepoints' ids.
  v_full := v_top + (v_xmin - v_top % 4294967296 + 4294967296) % 4294967296;
  BEGIN
    RETURN pg_catalog.pg_xact_status(v_full::text::xid8) = 'in progress';
  EXCEPTION WHEN OTHERS THEN
    -- An id not handed out yet: the row is not this transaction's.
    RETURN false;
  END;
END
$$;
REVOKE ALL ON FUNCTION storage.entity_row_written_now(text, text, text, text, text) FROM PUBLIC;

-- Entity-linked upload, last step: the caller must have set the field to p_filename in this
-- transaction (an UPDATE as the caller, which RLS allowed) before the bytes are linked to the row.
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

-- Forgets the file (its object is queued by the trigger). The caller must have updated the row in
-- this transaction so that its field no longer names the file; the field is no longer cleared here,
-- with the owner's rights.
CREATE OR REPLACE FUNCTION storage.delete_entity_file(p_table text, p_row text, p_field text, p_filename text)
RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
BEGIN
  IF NOT storage.entity_row_written_now(p_table, p_row, p_field, NULL, p_filename) THEN
    RAISE EXCEPTION 'deleting a row''s file needs an update of that row''s field by the caller first'
      USING ERRCODE = '42501';
  END IF;
  DELETE FROM storage.entity_files
    WHERE table_name = p_table AND row_id = p_row AND field = p_field AND filename = p_filename;
  RETURN FOUND;
END
$$;

-- migrate:down
CREATE OR REPLACE FUNCTION storage.commit_entity_file(
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

CREATE OR REPLACE FUNCTION storage.delete_entity_file(p_table text, p_row text, p_field text, p_filename text)
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

DROP FUNCTION storage.entity_row_written_now(text, text, text, text, text);
