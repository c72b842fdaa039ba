-- A small upload (its body already read whole) in one transaction instead of two. Its bytes are
-- durable in the disk store's tmp directory before this runs, so a crash leaves them findable
-- without a 'writing' reservation (the sweeper scans tmp), and the reservation and the commit
-- (storage.commit_file, unchanged) happen in one transaction: one commit instead of two.

-- migrate:up
-- POST /rpc/store_file for a body held whole (run as the caller): what begin_upload, commit_file
-- and check_quota do together.
CREATE FUNCTION storage.store_whole_file(
  p_object uuid, p_backend text, p_path text, p_description text, p_size bigint, p_sha256 text,
  p_content_type text, p_quota bigint
) RETURNS uuid
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
DECLARE
  v_file uuid;
BEGIN
  IF auth.uid() IS NULL THEN
    RAISE EXCEPTION 'storing a file needs a signed-in user''s token' USING ERRCODE = '42501';
  END IF;
  -- First, before anything can wait: once a sweeper has taken the key for stray bytes (inserting
  -- its row), this upload fails instead of committing a version whose bytes are being removed.
  INSERT INTO storage.blobs (id, backend, key, owner_id) VALUES (p_object, p_backend, p_object::text, auth.uid())
    ON CONFLICT DO NOTHING;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'the upload''s bytes were swept before it finished; try again' USING ERRCODE = '55000';
  END IF;
  v_file := storage.commit_file(p_object, p_path, p_description, p_size, p_sha256, p_content_type);
  IF p_quota IS NOT NULL THEN
    PERFORM storage.check_quota(p_quota);
  END IF;
  RETURN v_file;
END
$$;
REVOKE ALL ON FUNCTION storage.store_whole_file(uuid, text, text, text, bigint, text, text, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION storage.store_whole_file(uuid, text, text, text, bigint, text, text, bigint) TO authenticated;

-- migrate:down
DROP FUNCTION storage.store_whole_file(uuid, text, text, text, bigint, text, text, bigint);
