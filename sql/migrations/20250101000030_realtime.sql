-- Realtime: the private `realtime` schema. An app publishes a table in its own migration
-- (`SELECT realtime.publish('todos')`); triggers then record every change into realtime.changes
-- and wake the sidecars with NOTIFY. Nothing is published by default. The API roles get nothing
-- here: only the sidecar (the owner connection) reads the log, and the trigger functions run as
-- their owner (SECURITY DEFINER), so writers need no privilege on this schema.
--
-- Ordering (why there are two numbers per change): `id` is taken when the writer inserts into the
-- log, which is NOT commit order; a reader that has seen id N may later see N-1 commit. So
-- `position` is assigned after commit by realtime.stamp(): one stamper at a time (advisory lock)
-- numbers every committed, unnumbered change, in id order, continuing a gapless counter. A change
-- that commits later always gets a larger position, so "everything after position P" is stable and
-- is what clients resume from. Two changes to the same row are stamped in their commit order: the
-- second writer waits for the first one's row lock, so it logs (and becomes visible) after it.

-- migrate:up
CREATE SCHEMA realtime;
REVOKE ALL ON SCHEMA realtime FROM PUBLIC;

CREATE TABLE realtime.publications (
  relid oid PRIMARY KEY,
  table_schema text NOT NULL,
  table_name text NOT NULL,
  key_columns text[] NOT NULL,
  published_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE realtime.changes (
  id bigint GENERATED ALWAYS AS IDENTITY,
  position bigint,
  stamped_at timestamptz,
  relid oid NOT NULL,
  event text NOT NULL CHECK (event IN ('INSERT', 'UPDATE', 'DELETE')),
  -- The primary key of the row after the change (of the deleted row for DELETE).
  key jsonb NOT NULL,
  -- UPDATE: the key before the change (differs from `key` only if the key was updated).
  old_key jsonb,
  -- DELETE: the whole old row, so that visibility before the delete can be judged afterwards.
  old_row jsonb
);
-- The writer pays for one heap insert and this one small index entry per change.
CREATE INDEX changes_unstamped ON realtime.changes (id) WHERE position IS NULL;
CREATE UNIQUE INDEX changes_position ON realtime.changes (position) WHERE position IS NOT NULL;

CREATE TABLE realtime.state (
  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  last_position bigint NOT NULL DEFAULT 0,
  -- The highest position ever pruned: a resume from below it cannot be served exactly.
  pruned_through bigint NOT NULL DEFAULT 0
);
INSERT INTO realtime.state DEFAULT VALUES;

CREATE FUNCTION realtime.key_of(r jsonb, cols text[]) RETURNS jsonb
LANGUAGE sql IMMUTABLE
AS $$ SELECT jsonb_object_agg(c, r -> c) FROM unnest(cols) AS c $$;

-- Statement-level triggers with transition tables: a bulk insert costs one trigger call and one
-- INSERT ... SELECT into the log, plus one NOTIFY (PostgreSQL folds repeats within a transaction).
CREATE FUNCTION realtime.capture_insert() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
BEGIN
  INSERT INTO realtime.changes (relid, event, key)
  SELECT TG_RELID, 'INSERT', realtime.key_of(to_jsonb(n), TG_ARGV) FROM new_rows AS n;
  IF FOUND THEN PERFORM pg_notify('plinth_realtime', ''); END IF;
  RETURN NULL;
END $$;

CREATE FUNCTION realtime.capture_delete() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
BEGIN
  INSERT INTO realtime.changes (relid, event, key, old_row)
  SELECT TG_RELID, 'DELETE', realtime.key_of(o.r, TG_ARGV), o.r
  FROM (SELECT to_jsonb(o) AS r FROM old_rows AS o) AS o;
  IF FOUND THEN PERFORM pg_notify('plinth_realtime', ''); END IF;
  RETURN NULL;
END $$;

-- UPDATE is row-level: transition tables do not pair each old row with its new row, and the key
-- itself may change.
CREATE FUNCTION realtime.capture_update() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
BEGIN
  INSERT INTO realtime.changes (relid, event, key, old_key)
  VALUES (TG_RELID, 'UPDATE', realtime.key_of(to_jsonb(NEW), TG_ARGV), realtime.key_of(to_jsonb(OLD), TG_ARGV));
  PERFORM pg_notify('plinth_realtime', '');
  RETURN NULL;
END $$;

CREATE FUNCTION realtime.unpublish(tbl regclass) RETURNS void
LANGUAGE plpgsql SET search_path = ''
AS $$
BEGIN
  EXECUTE format('DROP TRIGGER IF EXISTS plinth_realtime_insert ON %s', tbl);
  EXECUTE format('DROP TRIGGER IF EXISTS plinth_realtime_update ON %s', tbl);
  EXECUTE format('DROP TRIGGER IF EXISTS plinth_realtime_delete ON %s', tbl);
  DELETE FROM realtime.publications WHERE relid = tbl;
  DELETE FROM realtime.changes WHERE relid = tbl;
END $$;

CREATE FUNCTION realtime.publish(tbl regclass) RETURNS void
LANGUAGE plpgsql SET search_path = ''
AS $$
DECLARE
  keys text[];
  args text;
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
  args := (SELECT string_agg(quote_literal(k), ', ') FROM unnest(keys) AS k);
  EXECUTE format('CREATE TRIGGER plinth_realtime_insert AFTER INSERT ON %s REFERENCING NEW TABLE AS new_rows '
                 'FOR EACH STATEMENT EXECUTE FUNCTION realtime.capture_insert(%s)', tbl, args);
  EXECUTE format('CREATE TRIGGER plinth_realtime_update AFTER UPDATE ON %s '
                 'FOR EACH ROW EXECUTE FUNCTION realtime.capture_update(%s)', tbl, args);
  EXECUTE format('CREATE TRIGGER plinth_realtime_delete AFTER DELETE ON %s REFERENCING OLD TABLE AS old_rows '
                 'FOR EACH STATEMENT EXECUTE FUNCTION realtime.capture_delete(%s)', tbl, args);
  INSERT INTO realtime.publications (relid, table_schema, table_name, key_columns)
  SELECT c.oid, n.nspname, c.relname, keys
  FROM pg_catalog.pg_class AS c JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
  WHERE c.oid = tbl;
END $$;

-- Numbers every committed, unnumbered change in commit order (see the top of this file) and
-- returns the last position. Every sidecar calls it before reading; the lock makes them take turns,
-- and each statement below takes a fresh snapshot after the lock is held.
CREATE FUNCTION realtime.stamp() RETURNS bigint
LANGUAGE plpgsql SET search_path = ''
AS $$
DECLARE
  base bigint;
  n bigint;
BEGIN
  PERFORM pg_advisory_xact_lock(hashtext('plinth.realtime.stamp'));
  SELECT last_position INTO base FROM realtime.state;
  WITH pending AS (
    SELECT ctid AS row_id, row_number() OVER (ORDER BY id) AS rn
    FROM realtime.changes WHERE position IS NULL
  )
  UPDATE realtime.changes AS c SET position = base + p.rn, stamped_at = now()
  FROM pending AS p WHERE c.ctid = p.row_id;
  GET DIAGNOSTICS n = ROW_COUNT;
  IF n > 0 THEN
    UPDATE realtime.state SET last_position = base + n;
  END IF;
  RETURN base + n;
END $$;

-- Drops numbered changes older than `keep` (config.realtime.retention); remembers how far it went.
CREATE FUNCTION realtime.prune(keep interval) RETURNS bigint
LANGUAGE plpgsql SET search_path = ''
AS $$
DECLARE
  top bigint;
BEGIN
  WITH gone AS (
    DELETE FROM realtime.changes WHERE position IS NOT NULL AND stamped_at < now() - keep RETURNING position
  )
  SELECT max(position) INTO top FROM gone;
  IF top IS NOT NULL THEN
    UPDATE realtime.state SET pruned_through = greatest(pruned_through, top);
  END IF;
  RETURN coalesce(top, 0);
END $$;

-- The condition under which `as_role` may SELECT a row of `rel`, as SQL text over the table's
-- columns: NULL without the SELECT privilege, 'true' when RLS does not apply, otherwise the
-- table's own SELECT policies for that role combined the way PostgreSQL combines them (any
-- permissive one AND every restrictive one; none at all means no rows). The sidecar evaluates it,
-- as the subscriber, over the old image of a deleted row: RLS itself cannot be asked about a row
-- that is no longer in the table. A policy without a USING expression counts as false.
CREATE FUNCTION realtime.visibility_predicate(rel oid, as_role name) RETURNS text
LANGUAGE sql STABLE SET search_path = ''
AS $$
  SELECT CASE
    WHEN NOT has_table_privilege(as_role, rel, 'SELECT') THEN NULL
    WHEN NOT c.relrowsecurity OR r.rolbypassrls THEN 'true'
    ELSE format('(%s) AND (%s)',
      coalesce((
        SELECT string_agg(format('(%s)', coalesce(pg_get_expr(p.polqual, p.polrelid), 'false')), ' OR ')
        FROM pg_catalog.pg_policy AS p
        WHERE p.polrelid = rel AND p.polpermissive AND p.polcmd IN ('r', '*')
          AND (0::oid = ANY (p.polroles) OR EXISTS (SELECT FROM unnest(p.polroles) AS pr WHERE pg_has_role(as_role, pr, 'USAGE')))
      ), 'false'),
      coalesce((
        SELECT string_agg(format('(%s)', coalesce(pg_get_expr(p.polqual, p.polrelid), 'false')), ' AND ')
        FROM pg_catalog.pg_policy AS p
        WHERE p.polrelid = rel AND NOT p.polpermissive AND p.polcmd IN ('r', '*')
          AND (0::oid = ANY (p.polroles) OR EXISTS (SELECT FROM unnest(p.polroles) AS pr WHERE pg_has_role(as_role, pr, 'USAGE')))
      ), 'true'))
  END
  FROM pg_catalog.pg_class AS c, pg_catalog.pg_roles AS r
  WHERE c.oid = rel AND r.rolname = as_role
$$;

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA realtime FROM PUBLIC;

-- migrate:down
DO $$
DECLARE t oid;
BEGIN
  FOR t IN SELECT p.relid FROM realtime.publications AS p JOIN pg_catalog.pg_class AS c ON c.oid = p.relid LOOP
    PERFORM realtime.unpublish(t::regclass);
  END LOOP;
END $$;
DROP SCHEMA realtime CASCADE;
