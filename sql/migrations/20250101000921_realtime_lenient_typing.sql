-- Realtime: a decoded change that no longer fits its table is logged anyway.
--
-- realtime.typed gives decoded values their columns' JSON types by reading them as a row of the
-- table as it is now. A change decoded after a migration altered its table can fail that: a
-- deleted row's text that the column's new type refuses, a key column renamed. Such a failure used
-- to fail realtime.append for the whole batch, and the sidecar retried it for ever: no change of
-- any table was logged again, and the replication slot kept all WAL from then on. Now a row that
-- cannot be read as the table's row is typed value by value: a value that its column (by name)
-- still takes is typed, any other is logged as decoded, and a warning goes to PostgreSQL's log.
-- Judging such a deleted row for a subscriber may then fail, which ends that subscription with an
-- error (as for any change whose table changed under it); nothing is skipped silently.

-- migrate:up
-- The reading as the table's row stays as it was, under this name; realtime.typed tries it first.
ALTER FUNCTION realtime.typed(oid, jsonb, text[]) RENAME TO typed_as_table;

CREATE FUNCTION realtime.typed_leniently(rel oid, r jsonb, keys text[]) RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = ''
AS $$
DECLARE
  result jsonb := '{}';
  col text;
  val jsonb;
  typ regtype;
  typed jsonb;
BEGIN
  FOR col, val IN SELECT e.key, e.value FROM jsonb_each(r) AS e LOOP
    CONTINUE WHEN keys IS NOT NULL AND NOT col = ANY (keys);
    typ := (SELECT a.atttypid::regtype FROM pg_catalog.pg_attribute AS a
            WHERE a.attrelid = rel AND a.attname = col AND a.attnum > 0 AND NOT a.attisdropped);
    typed := val;
    -- Decoded values are JSON strings, except json and jsonb (already parsed) and NULL.
    IF typ IS NOT NULL AND jsonb_typeof(val) = 'string' THEN
      BEGIN
        EXECUTE format('SELECT to_jsonb($1::%s)', typ) INTO typed USING val #>> '{}';
      EXCEPTION WHEN OTHERS THEN
        typed := val;
      END;
    END IF;
    result := result || jsonb_build_object(col, typed);
  END LOOP;
  RETURN result;
END $$;

CREATE FUNCTION realtime.typed(rel oid, rows jsonb, keys text[]) RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = ''
AS $$
BEGIN
  RETURN realtime.typed_as_table(rel, rows, keys);
EXCEPTION WHEN OTHERS THEN
  -- SQLSTATE only: the message may quote a row's value, which has no place in a log.
  RAISE WARNING 'realtime: changes of % no longer fit the table (SQLSTATE %); logged with the values as decoded where their columns refuse them', rel::regclass, SQLSTATE;
  RETURN (SELECT jsonb_agg(realtime.typed_leniently(rel, x.j, keys) ORDER BY x.n)
          FROM jsonb_array_elements(rows) WITH ORDINALITY AS x(j, n));
END $$;

-- migrate:down
DROP FUNCTION realtime.typed(oid, jsonb, text[]);
DROP FUNCTION realtime.typed_leniently(oid, jsonb, text[]);
ALTER FUNCTION realtime.typed_as_table(oid, jsonb, text[]) RENAME TO typed;
