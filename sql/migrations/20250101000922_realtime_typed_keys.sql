-- Realtime: keys the sidecar already typed are logged as they come, and appends say where the log ends.
--
-- realtime.typed reads decoded values as a row of their table, with a dynamic query (and a
-- subtransaction) for every log entry. Primary keys are nearly always integers, text or uuids,
-- whose JSON the sidecar gives exactly as to_jsonb would (a number, a string), so it sends such
-- keys typed and marks the entry {"typed": true}; realtime.append then logs keys and old_keys as
-- they are. Entries without the mark (other key types, or a sidecar from before this change) are
-- typed here as before. Deleted rows (old_rows) are always typed here.
--
-- Its notification now carries the log's new head, so a sidecar's feed need not read
-- realtime.state to learn it (capture triggers still notify without one, and are read).

-- migrate:up
CREATE OR REPLACE FUNCTION realtime.append(entries jsonb, from_lsn pg_lsn, from_done int, to_lsn pg_lsn, to_done int) RETURNS bigint
LANGUAGE plpgsql SET search_path = ''
AS $$
DECLARE
  s realtime.state;
  top bigint;
BEGIN
  PERFORM pg_advisory_xact_lock(hashtext('plinth.realtime.stamp'));
  PERFORM realtime.stamp();
  SELECT * INTO s FROM realtime.state;
  IF (from_lsn, from_done) < (s.decoded_lsn, s.decoded_done) THEN
    RAISE EXCEPTION 'realtime.append: changes up to % (%) are logged already', s.decoded_lsn, s.decoded_done
      USING ERRCODE = 'PLR01';
  END IF;
  WITH e AS (
    SELECT x.n AS ord, p.relid, x.j->>'event' AS event, x.j, p.key_columns, jsonb_array_length(x.j->'keys') AS n
    FROM jsonb_array_elements(entries) WITH ORDINALITY AS x(j, n)
    JOIN realtime.publications AS p ON p.relid = (x.j->>'relid')::oid
  ), logged AS (
    INSERT INTO realtime.changes (relid, event, n, keys, old_keys, old_rows, position, stamped_at)
    SELECT relid, event, n,
           CASE WHEN (j->>'typed')::boolean THEN j->'keys' ELSE realtime.typed(relid, j->'keys', key_columns) END,
           CASE WHEN (j->>'typed')::boolean THEN nullif(j->'old_keys', 'null') ELSE realtime.typed(relid, nullif(j->'old_keys', 'null'), key_columns) END,
           realtime.typed(relid, nullif(j->'old_rows', 'null'), NULL),
           s.last_position + sum(n) OVER (ORDER BY ord) - n + 1,
           now()
    FROM e ORDER BY ord
    RETURNING position + n - 1 AS last
  )
  SELECT max(last) INTO top FROM logged;
  UPDATE realtime.state
  SET last_position = coalesce(top, last_position),
      stamped_at = CASE WHEN top IS NULL THEN stamped_at ELSE clock_timestamp() END,
      decoded_lsn = to_lsn, decoded_done = to_done;
  IF top IS NOT NULL THEN
    PERFORM pg_notify('plinth_realtime', top::text);
  END IF;
  RETURN coalesce(top, s.last_position);
END $$;

-- migrate:down
CREATE OR REPLACE FUNCTION realtime.append(entries jsonb, from_lsn pg_lsn, from_done int, to_lsn pg_lsn, to_done int) RETURNS bigint
LANGUAGE plpgsql SET search_path = ''
AS $$
DECLARE
  s realtime.state;
  top bigint;
BEGIN
  PERFORM pg_advisory_xact_lock(hashtext('plinth.realtime.stamp'));
  PERFORM realtime.stamp();
  SELECT * INTO s FROM realtime.state;
  IF (from_lsn, from_done) < (s.decoded_lsn, s.decoded_done) THEN
    RAISE EXCEPTION 'realtime.append: changes up to % (%) are logged already', s.decoded_lsn, s.decoded_done
      USING ERRCODE = 'PLR01';
  END IF;
  WITH e AS (
    SELECT x.n AS ord, p.relid, x.j->>'event' AS event, x.j, p.key_columns, jsonb_array_length(x.j->'keys') AS n
    FROM jsonb_array_elements(entries) WITH ORDINALITY AS x(j, n)
    JOIN realtime.publications AS p ON p.relid = (x.j->>'relid')::oid
  ), logged AS (
    INSERT INTO realtime.changes (relid, event, n, keys, old_keys, old_rows, position, stamped_at)
    SELECT relid, event, n,
           realtime.typed(relid, j->'keys', key_columns),
           realtime.typed(relid, nullif(j->'old_keys', 'null'), key_columns),
           realtime.typed(relid, nullif(j->'old_rows', 'null'), NULL),
           s.last_position + sum(n) OVER (ORDER BY ord) - n + 1,
           now()
    FROM e ORDER BY ord
    RETURNING position + n - 1 AS last
  )
  SELECT max(last) INTO top FROM logged;
  UPDATE realtime.state
  SET last_position = coalesce(top, last_position),
      stamped_at = CASE WHEN top IS NULL THEN stamped_at ELSE clock_timestamp() END,
      decoded_lsn = to_lsn, decoded_done = to_done;
  IF top IS NOT NULL THEN
    PERFORM pg_notify('plinth_realtime', '');
  END IF;
  RETURN coalesce(top, s.last_position);
END $$;
