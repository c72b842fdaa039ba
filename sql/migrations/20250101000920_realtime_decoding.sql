-- Realtime: changes captured by logical decoding instead of triggers, where the database allows it.
--
-- With wal_level = logical the database gets a replication slot (realtime.slot_name()), made by
-- the first sidecar that starts: PostgreSQL creates one only in a transaction that has written
-- nothing, which a migration is not. The sidecar then calls realtime.capture_by_decoding, and from
-- then on realtime.publish adds a table to the publication plinth_realtime, with REPLICA IDENTITY
-- FULL (judging who could see a deleted row needs the whole old row), instead of installing
-- capture triggers. A writer pays nothing beyond its own WAL: after the commit, one sidecar at a
-- time (whichever holds the slot, sidecar/realtime/capture.ts) reads the decoded changes and
-- appends them, numbered, to realtime.changes with realtime.append. Where the database has no
-- logical WAL, or the slot cannot be made (an external database that does not allow it), tables
-- keep their capture triggers as before.

-- migrate:up
-- This database's slot: slot names are shared by every database of the server.
CREATE FUNCTION realtime.slot_name() RETURNS name
LANGUAGE sql STABLE SET search_path = ''
AS $$ SELECT ('plinth_realtime_' || oid)::name FROM pg_catalog.pg_database WHERE datname = current_database() $$;

-- Whether realtime.publish captures by logical decoding: the slot exists and can still be read.
CREATE FUNCTION realtime.decoding() RETURNS boolean
LANGUAGE sql STABLE SET search_path = ''
AS $$
  SELECT EXISTS (SELECT FROM pg_catalog.pg_replication_slots
                 WHERE slot_name = realtime.slot_name() AND wal_status IS DISTINCT FROM 'lost')
$$;

-- Whether a table's changes are decoded: it is in the publication.
CREATE FUNCTION realtime.decoded(tbl oid) RETURNS boolean
LANGUAGE sql STABLE SET search_path = ''
AS $$
  SELECT EXISTS (SELECT FROM pg_catalog.pg_publication_rel AS r JOIN pg_catalog.pg_publication AS p ON p.oid = r.prpubid
                 WHERE p.pubname = 'plinth_realtime' AND r.prrelid = tbl)
$$;

-- Whether any table is published (rows left behind by a table dropped without unpublishing do
-- not count): the slot is kept only while this holds.
CREATE FUNCTION realtime.any_published() RETURNS boolean
LANGUAGE sql STABLE SET search_path = ''
AS $$
  SELECT EXISTS (SELECT FROM realtime.publications AS p JOIN pg_catalog.pg_class AS c ON c.oid = p.relid)
$$;

-- How far the decoded stream has been appended: every change of the transactions that committed
-- before decoded_lsn, and the first decoded_done changes of the one that committed at decoded_lsn.
-- A stream read again (after a reconnection, or by another sidecar) skips what is logged already.
ALTER TABLE realtime.state
  ADD COLUMN decoded_lsn pg_lsn NOT NULL DEFAULT '0/0',
  ADD COLUMN decoded_done int NOT NULL DEFAULT 0;

-- How a table's changes are captured, without touching its logged changes.
CREATE FUNCTION realtime.stop_capture(tbl regclass) RETURNS void
LANGUAGE plpgsql SET search_path = ''
AS $$
BEGIN
  EXECUTE format('DROP FUNCTION IF EXISTS realtime.%I() CASCADE', 'capture_' || tbl::oid);
  IF realtime.decoded(tbl) THEN
    EXECUTE format('ALTER PUBLICATION plinth_realtime DROP TABLE %s', tbl);
    EXECUTE format('ALTER TABLE %s REPLICA IDENTITY DEFAULT', tbl);
  END IF;
END $$;

CREATE FUNCTION realtime.start_capture(tbl regclass, keys text[]) RETURNS void
LANGUAGE plpgsql SET search_path = ''
AS $$
DECLARE
  fn text := 'realtime.' || quote_ident('capture_' || tbl::oid);
BEGIN
  -- Decided under the lock that dropping an unused slot takes: never decoded without a slot.
  PERFORM pg_advisory_xact_lock(hashtext('plinth.realtime.capture'));
  IF realtime.decoding() THEN
    EXECUTE format('ALTER TABLE %s REPLICA IDENTITY FULL', tbl);
    EXECUTE format('ALTER PUBLICATION plinth_realtime ADD TABLE %s', tbl);
    RETURN;
  END IF;
  EXECUTE realtime.capture_function(tbl, keys);
  EXECUTE format('CREATE TRIGGER plinth_realtime_insert AFTER INSERT ON %s REFERENCING NEW TABLE AS new_rows '
                 'FOR EACH STATEMENT EXECUTE FUNCTION %s()', tbl, fn);
  EXECUTE format('CREATE TRIGGER plinth_realtime_update AFTER UPDATE ON %s '
                 'FOR EACH ROW EXECUTE FUNCTION %s()', tbl, fn);
  EXECUTE format('CREATE TRIGGER plinth_realtime_delete AFTER DELETE ON %s REFERENCING OLD TABLE AS old_rows '
                 'FOR EACH STATEMENT EXECUTE FUNCTION %s()', tbl, fn);
  EXECUTE format('REVOKE ALL ON FUNCTION %s() FROM PUBLIC', fn);
END $$;

CREATE OR REPLACE FUNCTION realtime.unpublish(tbl regclass) RETURNS void
LANGUAGE plpgsql SET search_path = ''
AS $$
BEGIN
  PERFORM realtime.stop_capture(tbl);
  DELETE FROM realtime.publications WHERE relid = tbl;
  DELETE FROM realtime.changes WHERE relid = tbl;
END $$;

CREATE OR REPLACE FUNCTION realtime.publish(tbl regclass) RETURNS void
LANGUAGE plpgsql SET search_path = ''
AS $$
DECLARE
  keys text[];
BEGIN
  IF (SELECT relkind FROM pg_catalog.pg_class WHERE oid = tbl) NOT IN ('r', 'p') THEN
    RAISE EXCEPTION 'realtime.publish: % is not a table', tbl;
  END IF;
  SELECT array_agg(a.attname::text ORDER BY k.ord) INTO keys
  FROM pg_catalog.pg_index AS i
  CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
  JOIN pg_catalog.pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
  WHERE i.indrelid = tbl AND i.indisprimary;
  IF keys IS NULL THEN
    RAISE EXCEPTION 'realtime.publish: table % has no primary key', tbl
      USING HINT = 'Realtime messages identify rows by their primary key; add one first.';
  END IF;
  PERFORM realtime.unpublish(tbl);
  PERFORM realtime.start_capture(tbl, keys);
  INSERT INTO realtime.publications (relid, table_schema, table_name, key_columns)
  SELECT c.oid, n.nspname, c.relname, keys
  FROM pg_catalog.pg_class AS c JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
  WHERE c.oid = tbl;
END $$;

-- Decoded values arrive as text (json and jsonb columns already parsed by the sidecar); this gives
-- each row the JSON its table's types give it (what to_jsonb of the row would), as the key columns
-- only when `keys` is given. NULL when the table is gone. The aliases cannot be taken for columns.
CREATE FUNCTION realtime.typed(rel oid, rows jsonb, keys text[]) RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = ''
AS $$
DECLARE
  result jsonb;
BEGIN
  IF rows IS NULL OR NOT EXISTS (SELECT FROM pg_catalog.pg_class WHERE oid = rel) THEN
    RETURN NULL;
  END IF;
  EXECUTE format(
    'SELECT jsonb_agg(%s ORDER BY _plinth_x.n) FROM jsonb_array_elements($1) WITH ORDINALITY AS _plinth_x(j, n) '
    'CROSS JOIN LATERAL jsonb_populate_record(null::%s, _plinth_x.j) AS _plinth_row',
    CASE WHEN keys IS NULL THEN 'to_jsonb(_plinth_row.*)'
         ELSE format('jsonb_build_object(%s)', (SELECT string_agg(format('%L, _plinth_row.%I', k, k), ', ') FROM unnest(keys) AS k)) END,
    rel::regclass)
  INTO result USING rows;
  RETURN result;
END $$;

-- Appends decoded changes to the log, numbered after everything logged so far (changes of tables
-- still captured by triggers are numbered first). `entries` is a JSON array of log entries in
-- commit order: {relid, event, keys, old_keys, old_rows}, the values as decoded (text, json and
-- jsonb parsed), typed here by realtime.typed. The first
-- change is the from_done-th (from 0) of the transaction that committed at from_lsn; the last one
-- leaves the stream at (to_lsn, to_done). Raises PLR01 when some of them are logged already: the
-- caller reads realtime.state again and sends only the rest.
CREATE FUNCTION realtime.append(entries jsonb, from_lsn pg_lsn, from_done int, to_lsn pg_lsn, to_done int) RETURNS bigint
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

-- A slot that is gone (dropped by hand, or lost because the server removed the WAL it needed) is
-- made again by the sidecar that finds it missing. Changes committed in between were never
-- decoded: resuming from a position before now is refused (pruned_through), as after pruning.
CREATE FUNCTION realtime.recreate_slot() RETURNS bigint
LANGUAGE plpgsql SET search_path = ''
AS $$
DECLARE
  head bigint;
BEGIN
  IF EXISTS (SELECT FROM pg_catalog.pg_replication_slots WHERE slot_name = realtime.slot_name() AND wal_status = 'lost') THEN
    PERFORM pg_catalog.pg_drop_replication_slot(realtime.slot_name());
  END IF;
  PERFORM pg_catalog.pg_create_logical_replication_slot(realtime.slot_name(), 'pgoutput');
  UPDATE realtime.state SET pruned_through = greatest(pruned_through, last_position + 1), decoded_lsn = '0/0', decoded_done = 0
  RETURNING last_position INTO head;
  RETURN head;
END $$;

-- Moves every published table captured by triggers to the publication, once the slot exists. In
-- one transaction, so each table's changes are captured exactly one way: by its triggers until
-- this commits, decoded after. Returns how many tables moved.
CREATE FUNCTION realtime.capture_by_decoding() RETURNS int
LANGUAGE plpgsql SET search_path = ''
AS $$
DECLARE
  p record;
  moved int := 0;
BEGIN
  PERFORM pg_advisory_xact_lock(hashtext('plinth.realtime.capture'));
  IF NOT realtime.decoding() THEN
    RETURN 0;
  END IF;
  FOR p IN SELECT pub.relid, pub.key_columns FROM realtime.publications AS pub JOIN pg_catalog.pg_class AS c ON c.oid = pub.relid
           WHERE NOT realtime.decoded(pub.relid) LOOP
    PERFORM realtime.stop_capture(p.relid::regclass);
    PERFORM realtime.start_capture(p.relid::regclass, p.key_columns);
    moved := moved + 1;
  END LOOP;
  RETURN moved;
END $$;

-- Drops the slot once no table is published: decoding would cost every writer for nothing. The
-- next realtime.publish installs capture triggers, until a sidecar makes the slot again.
CREATE FUNCTION realtime.drop_unused_slot() RETURNS boolean
LANGUAGE plpgsql SET search_path = ''
AS $$
BEGIN
  PERFORM pg_advisory_xact_lock(hashtext('plinth.realtime.capture'));
  IF realtime.any_published()
     OR NOT EXISTS (SELECT FROM pg_catalog.pg_replication_slots WHERE slot_name = realtime.slot_name()) THEN
    RETURN false;
  END IF;
  PERFORM pg_catalog.pg_drop_replication_slot(realtime.slot_name());
  UPDATE realtime.state SET decoded_lsn = '0/0', decoded_done = 0;
  RETURN true;
END $$;

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA realtime FROM PUBLIC;

-- migrate:down
-- Every published table leaves the publication, the slot goes, and the tables get their capture
-- triggers back (realtime.decoding() is false from then on).
DO $$
DECLARE p record;
BEGIN
  FOR p IN SELECT relid FROM realtime.publications LOOP
    PERFORM realtime.stop_capture(p.relid::regclass);
  END LOOP;
  IF EXISTS (SELECT FROM pg_catalog.pg_replication_slots WHERE slot_name = realtime.slot_name()) THEN
    PERFORM pg_catalog.pg_drop_replication_slot(realtime.slot_name());
  END IF;
END $$;

DO $$
DECLARE p record;
BEGIN
  FOR p IN SELECT relid, key_columns FROM realtime.publications LOOP
    PERFORM realtime.start_capture(p.relid::regclass, p.key_columns);
  END LOOP;
END $$;

CREATE OR REPLACE FUNCTION realtime.unpublish(tbl regclass) RETURNS void
LANGUAGE plpgsql SET search_path = ''
AS $$
BEGIN
  EXECUTE format('DROP FUNCTION IF EXISTS realtime.%I() CASCADE', 'capture_' || tbl::oid);
  DELETE FROM realtime.publications WHERE relid = tbl;
  DELETE FROM realtime.changes WHERE relid = tbl;
END $$;

CREATE OR REPLACE FUNCTION realtime.publish(tbl regclass) RETURNS void
LANGUAGE plpgsql SET search_path = ''
AS $$
DECLARE
  keys text[];
  fn text := 'realtime.' || quote_ident('capture_' || tbl::oid);
BEGIN
  IF (SELECT relkind FROM pg_catalog.pg_class WHERE oid = tbl) NOT IN ('r', 'p') THEN
    RAISE EXCEPTION 'realtime.publish: % is not a table', tbl;
  END IF;
  SELECT array_agg(a.attname::text ORDER BY k.ord) INTO keys
  FROM pg_catalog.pg_index AS i
  CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
  JOIN pg_catalog.pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
  WHERE i.indrelid = tbl AND i.indisprimary;
  IF keys IS NULL THEN
    RAISE EXCEPTION 'realtime.publish: table % has no primary key', tbl
      USING HINT = 'Realtime messages identify rows by their primary key; add one first.';
  END IF;
  PERFORM realtime.unpublish(tbl);
  EXECUTE realtime.capture_function(tbl, keys);
  EXECUTE format('CREATE TRIGGER plinth_realtime_insert AFTER INSERT ON %s REFERENCING NEW TABLE AS new_rows '
                 'FOR EACH STATEMENT EXECUTE FUNCTION %s()', tbl, fn);
  EXECUTE format('CREATE TRIGGER plinth_realtime_update AFTER UPDATE ON %s '
                 'FOR EACH ROW EXECUTE FUNCTION %s()', tbl, fn);
  EXECUTE format('CREATE TRIGGER plinth_realtime_delete AFTER DELETE ON %s REFERENCING OLD TABLE AS old_rows '
                 'FOR EACH STATEMENT EXECUTE FUNCTION %s()', tbl, fn);
  EXECUTE format('REVOKE ALL ON FUNCTION %s() FROM PUBLIC', fn);
  INSERT INTO realtime.publications (relid, table_schema, table_name, key_columns)
  SELECT c.oid, n.nspname, c.relname, keys
  FROM pg_catalog.pg_class AS c JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
  WHERE c.oid = tbl;
END $$;

DROP FUNCTION realtime.drop_unused_slot();
DROP FUNCTION realtime.capture_by_decoding();
DROP FUNCTION realtime.recreate_slot();
DROP FUNCTION realtime.append(jsonb, pg_lsn, int, pg_lsn, int);
DROP FUNCTION realtime.typed(oid, jsonb, text[]);
DROP FUNCTION realtime.start_capture(regclass, text[]);
DROP FUNCTION realtime.stop_capture(regclass);
DROP FUNCTION realtime.any_published();
DROP FUNCTION realtime.decoded(oid);
DROP FUNCTION realtime.decoding();
DROP FUNCTION realtime.slot_name();
ALTER TABLE realtime.state DROP COLUMN decoded_lsn, DROP COLUMN decoded_done;
