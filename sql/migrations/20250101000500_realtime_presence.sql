-- Presence for Supabase's realtime clients (/realtime/v1/websocket): who is tracked on which topic,
-- shared by every sidecar of the database, each of which delivers the joins and leaves (announced
-- with NOTIFY) to its own sockets. A row belongs to the sidecar holding the socket; a sidecar that
-- stops removes its rows, and one that vanishes (a crash) stops being seen in realtime.sidecars,
-- after which the others remove its rows. Only the sidecar's owner connection reads or writes here.

-- migrate:up
CREATE TABLE realtime.sidecars (
  id uuid PRIMARY KEY,
  seen_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE realtime.presences (
  -- phx_ref: one tracked presence of one channel (a new track replaces it with a new ref).
  ref text PRIMARY KEY,
  topic text NOT NULL,
  key text NOT NULL,
  sidecar uuid NOT NULL REFERENCES realtime.sidecars (id) ON DELETE CASCADE,
  meta jsonb NOT NULL,
  tracked_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX presences_topic ON realtime.presences (topic);
CREATE INDEX presences_sidecar ON realtime.presences (sidecar);

-- migrate:down
DROP TABLE realtime.presences;
DROP TABLE realtime.sidecars;
