-- Realtime: a cheaper capture trigger for writers to published tables.
-- * realtime.changes loses its two CHECK constraints: only the generated capture functions write
--   it, and PostgreSQL re-reads and re-plans every CHECK expression for each INSERT statement,
--   which cost a single-row writer about as much as its own row.
-- * The capture function logs a statement of up to 500 rows with one plain aggregate (the windowed,
--   chunked form is kept for larger statements), and decides whether to wake the sidecars inline
--   instead of calling realtime.wake() (a second plpgsql call, with its own search_path switch).
-- Existing capture functions are regenerated in place: their triggers and logged changes stay.

-- migrate:up
ALTER TABLE realtime.changes DROP CONSTRAINT changes_event_check, DROP CONSTRAINT changes_n_check;

CREATE OR REPLACE FUNCTION realtime.capture_function(tbl regclass, keys text[]) RETURNS text
LANGUAGE sql STABLE SET search_path = ''
AS $fn$
  SELECT format($f$
    CREATE OR REPLACE FUNCTION realtime.%1$I() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
    AS $body$
    BEGIN
      IF TG_OP = 'INSERT' THEN
        -- At most 500 rows (what one log entry holds): one aggregate, no window or sort.
        INSERT INTO realtime.changes (relid, event, n, keys)
        SELECT %2$s, 'INSERT', count(*), jsonb_agg(jsonb_build_object(%3$s))
        FROM (SELECT * FROM new_rows LIMIT 501) AS n HAVING count(*) BETWEEN 1 AND 500;
        IF NOT FOUND THEN
          INSERT INTO realtime.changes (relid, event, n, keys)
          SELECT %2$s, 'INSERT', count(*), jsonb_agg(k ORDER BY ord)
          FROM (SELECT jsonb_build_object(%3$s) AS k, row_number() OVER () AS ord FROM new_rows AS n) AS r
          GROUP BY (ord - 1) / 500 ORDER BY min(ord);
        END IF;
      ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO realtime.changes (relid, event, keys, old_keys)
        VALUES (%2$s, 'UPDATE', jsonb_build_array(jsonb_build_object(%4$s)), jsonb_build_array(jsonb_build_object(%5$s)));
      ELSE
        INSERT INTO realtime.changes (relid, event, n, keys, old_rows)
        SELECT %2$s, 'DELETE', count(*), jsonb_agg(k ORDER BY ord), jsonb_agg(img ORDER BY ord)
        FROM (SELECT jsonb_build_object(%6$s) AS k, to_jsonb(o) AS img, row_number() OVER () AS ord FROM old_rows AS o) AS r
        GROUP BY (ord - 1) / 500 ORDER BY min(ord);
      END IF;
      -- realtime.wake(), inline: at most once per transaction, and only when the sidecars are idle.
      IF FOUND AND current_setting('realtime.woken', true) IS DISTINCT FROM 'yes' THEN
        PERFORM set_config('realtime.woken', 'yes', true);
        IF NOT EXISTS (SELECT FROM realtime.state WHERE stamped_at > clock_timestamp() - interval '500 milliseconds')
           AND NOT EXISTS (SELECT FROM realtime.changes WHERE position IS NULL AND xmin <> pg_current_xact_id()::xid) THEN
          PERFORM pg_notify('plinth_realtime', '');
        END IF;
      END IF;
      RETURN NULL;
    END $body$ $f$,
    'capture_' || tbl::oid,
    tbl::oid,
    (SELECT string_agg(format('%L, n.%I', k, k), ', ') FROM unnest(keys) AS k),
    (SELECT string_agg(format('%L, NEW.%I', k, k), ', ') FROM unnest(keys) AS k),
    (SELECT string_agg(format('%L, OLD.%I', k, k), ', ') FROM unnest(keys) AS k),
    (SELECT string_agg(format('%L, o.%I', k, k), ', ') FROM unnest(keys) AS k))
$fn$;
REVOKE ALL ON FUNCTION realtime.capture_function(regclass, text[]) FROM PUBLIC;

DO $$
DECLARE p record;
BEGIN
  FOR p IN SELECT relid, key_columns FROM realtime.publications LOOP
    EXECUTE realtime.capture_function(p.relid::regclass, p.key_columns);
  END LOOP;
END $$;

-- migrate:down
CREATE OR REPLACE FUNCTION realtime.capture_function(tbl regclass, keys text[]) RETURNS text
LANGUAGE sql STABLE SET search_path = ''
AS $fn$
  SELECT format($f$
    CREATE OR REPLACE FUNCTION realtime.%1$I() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
    AS $body$
    BEGIN
      IF TG_OP = 'INSERT' THEN
        INSERT INTO realtime.changes (relid, event, n, keys)
        SELECT %2$s, 'INSERT', count(*), jsonb_agg(k ORDER BY ord)
        FROM (SELECT jsonb_build_object(%3$s) AS k, row_number() OVER () AS ord FROM new_rows AS n) AS r
        GROUP BY (ord - 1) / 500 ORDER BY min(ord);
      ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO realtime.changes (relid, event, keys, old_keys)
        VALUES (%2$s, 'UPDATE', jsonb_build_array(jsonb_build_object(%4$s)), jsonb_build_array(jsonb_build_object(%5$s)));
      ELSE
        INSERT INTO realtime.changes (relid, event, n, keys, old_rows)
        SELECT %2$s, 'DELETE', count(*), jsonb_agg(k ORDER BY ord), jsonb_agg(img ORDER BY ord)
        FROM (SELECT jsonb_build_object(%6$s) AS k, to_jsonb(o) AS img, row_number() OVER () AS ord FROM old_rows AS o) AS r
        GROUP BY (ord - 1) / 500 ORDER BY min(ord);
      END IF;
      IF FOUND THEN
        PERFORM realtime.wake();
      END IF;
      RETURN NULL;
    END $body$ $f$,
    'capture_' || tbl::oid,
    tbl::oid,
    (SELECT string_agg(format('%L, n.%I', k, k), ', ') FROM unnest(keys) AS k),
    (SELECT string_agg(format('%L, NEW.%I', k, k), ', ') FROM unnest(keys) AS k),
    (SELECT string_agg(format('%L, OLD.%I', k, k), ', ') FROM unnest(keys) AS k),
    (SELECT string_agg(format('%L, o.%I', k, k), ', ') FROM unnest(keys) AS k))
$fn$;
REVOKE ALL ON FUNCTION realtime.capture_function(regclass, text[]) FROM PUBLIC;

DO $$
DECLARE p record;
BEGIN
  FOR p IN SELECT relid, key_columns FROM realtime.publications LOOP
    EXECUTE realtime.capture_function(p.relid::regclass, p.key_columns);
  END LOOP;
END $$;

ALTER TABLE realtime.changes
  ADD CONSTRAINT changes_event_check CHECK (event IN ('INSERT', 'UPDATE', 'DELETE')),
  ADD CONSTRAINT changes_n_check CHECK (n BETWEEN 1 AND 500);
