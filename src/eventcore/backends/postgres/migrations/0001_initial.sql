-- eventcore schema, version 1. `__SCHEMA__` is replaced by the quoted schema name.

-- Every stream's current version: the row is what an append locks.
CREATE TABLE __SCHEMA__.streams (
    stream_id text PRIMARY KEY,
    version   bigint NOT NULL CHECK (version >= 0)
);

-- The global position counter. Its row lock, taken inside the appending
-- transaction and held until commit, serialises the commits of appends: positions
-- are handed out in commit order, and a rolled-back append gives its numbers back.
-- Together: a gapless log that a tailing reader can never overtake.
CREATE TABLE __SCHEMA__.log_head (
    id       int PRIMARY KEY CHECK (id = 1),
    position bigint NOT NULL
);
INSERT INTO __SCHEMA__.log_head (id, position) VALUES (1, 0);

-- Payload and metadata are the exact JSON bytes the codec produced (bytea: no
-- re-parsing on the way in, no reformatting on the way out; query them with
-- convert_from(payload, 'UTF8')::jsonb).
CREATE TABLE __SCHEMA__.events (
    position       bigint PRIMARY KEY,
    event_id       uuid NOT NULL UNIQUE,
    stream_id      text NOT NULL,
    stream_version bigint NOT NULL CHECK (stream_version >= 1),
    event_type     text NOT NULL,
    payload        bytea NOT NULL,
    metadata       bytea NOT NULL,
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (stream_id, stream_version)
);
-- read_all with an event-type filter walks by position; this serves sparse types.
CREATE INDEX events_event_type_position ON __SCHEMA__.events (event_type, position);

CREATE FUNCTION __SCHEMA__.refuse_event_change() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    RAISE EXCEPTION 'eventcore: stored events are immutable (% refused)', TG_OP
        USING ERRCODE = 'raise_exception';
END
$fn$;
CREATE TRIGGER events_are_immutable BEFORE UPDATE OR DELETE ON __SCHEMA__.events
    FOR EACH ROW EXECUTE FUNCTION __SCHEMA__.refuse_event_change();
CREATE TRIGGER events_are_not_truncated BEFORE TRUNCATE ON __SCHEMA__.events
    FOR EACH STATEMENT EXECUTE FUNCTION __SCHEMA__.refuse_event_change();

CREATE TABLE __SCHEMA__.checkpoints (
    name     text PRIMARY KEY,
    position bigint NOT NULL CHECK (position >= 0),
    saved_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE __SCHEMA__.leases (
    name       text PRIMARY KEY,
    holder     text NOT NULL,
    expires_at timestamptz NOT NULL
);

-- append_batch: the appends of one or more commands, in one call and one
-- transaction. Command i owns expectations (p_expect_end[i-1], p_expect_end[i]]
-- and events (p_event_end[i-1], p_event_end[i]] of the flat arrays (1-based,
-- p_*_end[0] taken as 0). Commands are applied in order, each checked against
-- the versions left by the ones before it, so a batch behaves exactly like the
-- same appends made one after another. A conflict is *returned*, never raised,
-- so one command's conflict never fails its neighbours.
--
-- Lock order, the same in every transaction (so no deadlocks): every stream row of
-- the batch in stream_id order, then the log_head row.
CREATE FUNCTION __SCHEMA__.append_batch(
    p_expect_end      int[],
    p_expect_streams  text[],
    p_expect_versions bigint[],
    p_event_end       int[],
    p_event_ids       uuid[],
    p_event_streams   text[],
    p_event_types     text[],
    p_payloads        bytea[],
    p_metadata        bytea[])
RETURNS TABLE (
    command           int,
    first_position    bigint,
    out_streams       text[],
    out_versions      bigint[],
    conflict_stream   text,
    conflict_expected bigint,
    conflict_actual   bigint)
LANGUAGE plpgsql
AS $fn$
DECLARE
    v_commands int := coalesce(cardinality(p_expect_end), 0);
    v_e0 int := 0;
    v_v0 int := 0;
    v_e1 int;
    v_v1 int;
    v_n int;
    v_first bigint;
    v_last bigint := 0;
    v_bad record;
BEGIN
    IF v_commands <> coalesce(cardinality(p_event_end), 0) THEN
        RAISE EXCEPTION 'append_batch: p_expect_end and p_event_end differ in length';
    END IF;

    -- 1. every participating stream gets a row to lock (version 0 = empty stream)
    INSERT INTO __SCHEMA__.streams (stream_id, version)
    SELECT DISTINCT s, 0 FROM unnest(p_expect_streams) AS s ORDER BY 1
    ON CONFLICT DO NOTHING;

    -- 2. lock them all, in stream_id order
    PERFORM 1 FROM __SCHEMA__.streams
     WHERE stream_id = ANY (p_expect_streams)
     ORDER BY stream_id
       FOR UPDATE;

    FOR i IN 1 .. v_commands LOOP
        v_e1 := p_expect_end[i];
        v_v1 := p_event_end[i];
        v_n := v_v1 - v_v0;

        SELECT s.stream_id, x.expected, s.version AS actual
          INTO v_bad
          FROM unnest(p_expect_streams[v_e0 + 1 : v_e1], p_expect_versions[v_e0 + 1 : v_e1])
               AS x(stream_id, expected)
          JOIN __SCHEMA__.streams s ON s.stream_id = x.stream_id
         WHERE s.version <> x.expected
         ORDER BY s.stream_id
         LIMIT 1;

        IF FOUND THEN
            RETURN QUERY SELECT i, NULL::bigint, NULL::text[], NULL::bigint[],
                                v_bad.stream_id, v_bad.expected, v_bad.actual;
        ELSE
            v_first := NULL;
            IF v_n > 0 THEN
                UPDATE __SCHEMA__.log_head SET position = position + v_n
                 WHERE id = 1
                RETURNING position - v_n + 1 INTO v_first;

                INSERT INTO __SCHEMA__.events
                       (position, event_id, stream_id, stream_version, event_type,
                        payload, metadata)
                SELECT v_first + u.ord - 1, u.eid, u.sid,
                       s.version + row_number() OVER (PARTITION BY u.sid ORDER BY u.ord),
                       u.typ, u.pl, u.md
                  FROM unnest(p_event_ids[v_v0 + 1 : v_v1], p_event_streams[v_v0 + 1 : v_v1],
                              p_event_types[v_v0 + 1 : v_v1], p_payloads[v_v0 + 1 : v_v1],
                              p_metadata[v_v0 + 1 : v_v1])
                       WITH ORDINALITY AS u(eid, sid, typ, pl, md, ord)
                  JOIN __SCHEMA__.streams s ON s.stream_id = u.sid;

                UPDATE __SCHEMA__.streams s SET version = s.version + c.n
                  FROM (SELECT sid, count(*) AS n
                          FROM unnest(p_event_streams[v_v0 + 1 : v_v1]) AS sid
                         GROUP BY sid) AS c
                 WHERE s.stream_id = c.sid;
                v_last := v_first + v_n - 1;
            END IF;

            RETURN QUERY
            SELECT i, v_first, array_agg(s.stream_id), array_agg(s.version)
                 , NULL::text, NULL::bigint, NULL::bigint
              FROM __SCHEMA__.streams s
             WHERE s.stream_id = ANY (p_expect_streams[v_e0 + 1 : v_e1]);
        END IF;
        v_e0 := v_e1;
        v_v0 := v_v1;
    END LOOP;

    -- Wake tailing readers; delivered only when (and if) this transaction commits.
    IF v_last > 0 THEN
        PERFORM pg_notify('__CHANNEL__', v_last::text);
    END IF;
END
$fn$;
