-- Per-user storage quotas, and entity-linked uploads reserved as the caller.
--
-- Every stored version counts against one user: a user's own files (objects.owner_id) and the
-- entity-linked files they uploaded (objects.charged_to, the uploader's auth.uid()). Uploads made
-- with the anon or service key have no user and count against nobody.
--
-- The quota is checked in the transaction that commits the upload, after the new version is linked
-- (so the version it replaces is already queued for deletion and no longer counts), under a
-- per-user lock: of two concurrent uploads, the second to commit sees the first.

-- migrate:up
ALTER TABLE storage.objects ADD COLUMN charged_to uuid REFERENCES auth.users (id) ON DELETE SET NULL;
CREATE INDEX objects_user_usage_idx ON storage.objects ((coalesce(charged_to, owner_id))) WHERE state = 'ready';

-- POST /storage/upload, after the caller proved (in the same transaction) that they may update
-- the row: reserve a new object before any byte is written, charged to the caller.
CREATE FUNCTION storage.begin_entity_upload(p_backend text) RETURNS uuid
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
DECLARE
  v_id uuid := gen_random_uuid();
BEGIN
  INSERT INTO storage.objects (id, backend, key, charged_to) VALUES (v_id, p_backend, v_id::text, auth.uid());
  RETURN v_id;
END
$$;

-- Bytes the caller keeps stored: current versions only (replaced or deleted ones are queued).
CREATE FUNCTION storage.user_usage(p_user uuid) RETURNS bigint
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = ''
AS $$
  SELECT coalesce(sum(o.size), 0)::bigint FROM storage.objects o
  WHERE coalesce(o.charged_to, o.owner_id) = p_user AND o.state = 'ready'
    AND NOT EXISTS (SELECT 1 FROM storage.deletions d WHERE d.object_id = o.id)
$$;

-- Called as the caller after an upload's commit, in its transaction: refuses (rolling the whole
-- upload back, the previous version intact) when the caller's stored bytes exceed p_quota.
CREATE FUNCTION storage.check_quota(p_quota bigint) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = ''
AS $$
DECLARE
  v_user uuid := auth.uid();
  v_used bigint;
BEGIN
  IF v_user IS NULL OR p_quota IS NULL THEN
    RETURN;
  END IF;
  -- Held until commit; the sum below then takes a fresh snapshot that includes any upload that
  -- held the lock before us.
  PERFORM pg_advisory_xact_lock(hashtextextended('plinth.storage.quota:' || v_user::text, 0));
  v_used := storage.user_usage(v_user);
  IF v_used > p_quota THEN
    RAISE EXCEPTION 'This upload would bring your stored files to % bytes, over your storage quota of % bytes (PLINTH_USER_QUOTA)', v_used, p_quota
      USING ERRCODE = 'PT413', HINT = 'Delete files you no longer need, or ask the operator to raise PLINTH_USER_QUOTA';
  END IF;
END
$$;

REVOKE ALL ON FUNCTION storage.begin_entity_upload(text), storage.user_usage(uuid), storage.check_quota(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION storage.begin_entity_upload(text), storage.check_quota(bigint) TO anon, authenticated, service_role;

-- migrate:down
DROP FUNCTION storage.check_quota(bigint);
DROP FUNCTION storage.user_usage(uuid);
DROP FUNCTION storage.begin_entity_upload(text);
DROP INDEX storage.objects_user_usage_idx;
ALTER TABLE storage.objects DROP COLUMN charged_to;
