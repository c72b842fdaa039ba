-- Ended sessions, announced. An access token stays valid until it expires, but a realtime socket
-- can outlive that by far and keeps delivering rows; so whenever sessions end (logout, logout
-- everywhere, refresh-token reuse, or anything else that sets revoked_at, or deletes a live
-- session with its user), every sidecar is told, by NOTIFY on `plinth_sessions`, and closes the
-- sockets whose token names one of them. A sidecar that was not listening at that moment (its
-- listening connection was reconnecting) asks auth.ended_sessions about its sockets instead.

-- migrate:up

-- The payload is the ended session ids, comma-separated, in batches of 200 (7,400 bytes: NOTIFY
-- payloads must stay under 8,000), so a bulk revocation is a few notifications, not thousands.
CREATE FUNCTION auth.announce_ended_sessions() RETURNS trigger
LANGUAGE plpgsql SET search_path = ''
AS $$
DECLARE
  batch text;
BEGIN
  IF TG_OP = 'UPDATE' THEN
    FOR batch IN
      SELECT string_agg(id::text, ',')
        FROM (SELECT n.id, (row_number() OVER () - 1) / 200 AS chunk
                FROM new_rows n JOIN old_rows o USING (id)
               WHERE o.revoked_at IS NULL AND n.revoked_at IS NOT NULL) ended
       GROUP BY chunk
    LOOP
      PERFORM pg_notify('plinth_sessions', batch);
    END LOOP;
  ELSE
    -- A revoked session was announced when it was revoked; a live one deleted (its user was
    -- deleted) ends now.
    FOR batch IN
      SELECT string_agg(id::text, ',')
        FROM (SELECT o.id, (row_number() OVER () - 1) / 200 AS chunk
                FROM old_rows o
               WHERE o.revoked_at IS NULL) ended
       GROUP BY chunk
    LOOP
      PERFORM pg_notify('plinth_sessions', batch);
    END LOOP;
  END IF;
  RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION auth.announce_ended_sessions() FROM PUBLIC;

CREATE TRIGGER sessions_announce_revoked AFTER UPDATE ON auth.sessions
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION auth.announce_ended_sessions();
CREATE TRIGGER sessions_announce_deleted AFTER DELETE ON auth.sessions
  REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT EXECUTE FUNCTION auth.announce_ended_sessions();

-- Which of these session ids (a token's `session_id` claim, as text) name an ended session:
-- revoked, or gone while the token that names it is still open somewhere. Ids that are not uuids
-- name no session. Asked when a socket authenticates, and about every open socket after the
-- sidecar's listening connection comes back.
CREATE FUNCTION auth.ended_sessions(p_ids text[]) RETURNS SETOF text
LANGUAGE sql STABLE SET search_path = ''
AS $$
  SELECT x
    FROM unnest(p_ids) AS x
   WHERE pg_input_is_valid(x, 'uuid')
     AND NOT EXISTS (SELECT FROM auth.sessions s
                      WHERE s.id = CASE WHEN pg_input_is_valid(x, 'uuid') THEN x::uuid END
                        AND s.revoked_at IS NULL)
$$;
REVOKE ALL ON FUNCTION auth.ended_sessions(text[]) FROM PUBLIC;

-- migrate:down
DROP FUNCTION auth.ended_sessions(text[]);
DROP TRIGGER sessions_announce_deleted ON auth.sessions;
DROP TRIGGER sessions_announce_revoked ON auth.sessions;
DROP FUNCTION auth.announce_ended_sessions();
