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

-- The outcome of one command's append, as append_batch returns it: either the
-- first position of its events (NULL when it wrote none) with the version of every
-- participating stream after it, or the first conflicting stream.
CREATE TYPE __SCHEMA__.append_outcome AS (
    command           int,
    first_position    bigint,
    out_streams       text[],
    out_versions      bigint[],
    conflict_stream   text,
    conflict_expected bigint,
    conflict_actual   bigint
);

-- One command's append; its stream rows are already locked by append_batch.
CREATE FUNCTION __SCHEMA__.append_one(
    p_command int, p_streams text[], p_versions bigint[], p_ids uuid[],
    p_event_streams text[], p_types text[], p_payloads bytea[], p_metadata bytea[])
RETURNS SETOF __SCHEMA__.append_outcome
LANGUAGE plpgsql
AS $fn$
DECLARE
    v_n int := coalesce(cardinality(p_ids), 0);
    v_first bigint;
    v_bad record;
BEGIN
    SELECT s.stream_id, x.expected, s.version AS actual
      INTO v_bad
      FROM unnest(p_streams, p_versions) AS x(stream_id, expected)
      JOIN __SCHEMA__.streams s ON s.stream_id = x.stream_id
     WHERE s.version <> x.expected
     ORDER BY s.stream_id
     LIMIT 1;
    IF FOUND THEN
        RETURN QUERY SELECT p_command, NULL::bigint, NULL::text[], NULL::bigint[],
                            v_bad.stream_id, v_bad.expected, v_bad.actual;
        RETURN;
    END IF;
    IF v_n > 0 THEN
        UPDATE __SCHEMA__.log_head SET position = position + v_n WHERE id = 1
        RETURNING position - v_n + 1 INTO v_first;

        INSERT INTO __SCHEMA__.events
               (position, event_id, stream_id, stream_version, event_type, payload, metadata)
        SELECT v_first + u.ord - 1, u.eid, u.sid,
               s.version + row_number() OVER (PARTITION BY u.sid ORDER BY u.ord),
               u.typ, u.pl, u.md
          FROM unnest(p_ids, p_event_streams, p_types, p_payloads, p_metadata)
               WITH ORDINALITY AS u(eid, sid, typ, pl, md, ord)
          JOIN __SCHEMA__.streams s ON s.stream_id = u.sid;

        UPDATE __SCHEMA__.streams s SET version = s.version + c.n
          FROM (SELECT sid, count(*) AS n FROM unnest(p_event_streams) AS sid GROUP BY sid) c
         WHERE s.stream_id = c.sid;
        -- Wake tailing readers; delivered only when (and if) the transaction commits.
        PERFORM pg_notify('__CHANNEL__', (v_first + v_n - 1)::text);
    END IF;
    RETURN QUERY
    SELECT p_command, v_first, array_agg(s.stream_id), array_agg(s.version),
           NULL::text, NULL::bigint, NULL::bigint
      FROM __SCHEMA__.streams s
     WHERE s.stream_id = ANY (p_streams);
END
$fn$;

-- Commands that share no stream: checked and written all at once, set-based.
-- Equivalent to append_one per command in order, because no command can see
-- another's effects.
CREATE FUNCTION __SCHEMA__.append_independent(
    p_commands int, p_expect_cmd int[], p_expect_streams text[], p_expect_versions bigint[],
    p_event_cmd int[], p_ids uuid[], p_event_streams text[], p_types text[],
    p_payloads bytea[], p_metadata bytea[])
RETURNS SETOF __SCHEMA__.append_outcome
LANGUAGE plpgsql
AS $fn$
DECLARE
    v_bad int[];
    v_bad_stream text[];
    v_bad_expected bigint[];
    v_bad_actual bigint[];
    v_n int;
    v_base bigint;
BEGIN
    -- the first conflicting stream (in stream_id order) of each failing command
    SELECT coalesce(array_agg(t.cmd), '{}'), array_agg(t.sid), array_agg(t.expected),
           array_agg(t.version)
      INTO v_bad, v_bad_stream, v_bad_expected, v_bad_actual
      FROM (SELECT DISTINCT ON (x.cmd) x.cmd, x.sid, x.expected, s.version
              FROM unnest(p_expect_cmd, p_expect_streams, p_expect_versions)
                   AS x(cmd, sid, expected)
              JOIN __SCHEMA__.streams s ON s.stream_id = x.sid
             WHERE s.version <> x.expected
             ORDER BY x.cmd, x.sid) AS t;

    SELECT count(*) INTO v_n FROM unnest(p_event_cmd) AS c WHERE c <> ALL (v_bad);
    IF v_n > 0 THEN
        UPDATE __SCHEMA__.log_head SET position = position + v_n WHERE id = 1
        RETURNING position - v_n INTO v_base;

        INSERT INTO __SCHEMA__.events
               (position, event_id, stream_id, stream_version, event_type, payload, metadata)
        SELECT v_base + row_number() OVER (ORDER BY u.ord), u.eid, u.sid,
               s.version + row_number() OVER (PARTITION BY u.sid ORDER BY u.ord),
               u.typ, u.pl, u.md
          FROM unnest(p_event_cmd, p_ids, p_event_streams, p_types, p_payloads, p_metadata)
               WITH ORDINALITY AS u(cmd, eid, sid, typ, pl, md, ord)
          JOIN __SCHEMA__.streams s ON s.stream_id = u.sid
         WHERE u.cmd <> ALL (v_bad);

        UPDATE __SCHEMA__.streams s SET version = s.version + c.n
          FROM (SELECT u.sid, count(*) AS n
                  FROM unnest(p_event_cmd, p_event_streams) AS u(cmd, sid)
                 WHERE u.cmd <> ALL (v_bad)
                 GROUP BY u.sid) AS c
         WHERE s.stream_id = c.sid;
        PERFORM pg_notify('__CHANNEL__', (v_base + v_n)::text);
    END IF;

    RETURN QUERY
    WITH firsts AS (
        SELECT e.cmd, v_base + min(e.rank) AS first_position
          FROM (SELECT c.cmd, row_number() OVER (ORDER BY c.ord) AS rank
                  FROM unnest(p_event_cmd) WITH ORDINALITY AS c(cmd, ord)
                 WHERE c.cmd <> ALL (v_bad)) AS e
         GROUP BY e.cmd
    ), versions AS (
        SELECT x.cmd, array_agg(x.sid) AS streams, array_agg(s.version) AS versions
          FROM unnest(p_expect_cmd, p_expect_streams) AS x(cmd, sid)
          JOIN __SCHEMA__.streams s ON s.stream_id = x.sid
         GROUP BY x.cmd
    ), conflicts AS (
        SELECT * FROM unnest(v_bad, v_bad_stream, v_bad_expected, v_bad_actual)
               AS b(cmd, sid, expected, actual)
    )
    SELECT c.cmd::int, f.first_position, v.streams, v.versions, b.sid, b.expected, b.actual
      FROM generate_series(1, p_commands) AS c(cmd)
      LEFT JOIN conflicts b ON b.cmd = c.cmd
      LEFT JOIN firsts f ON f.cmd = c.cmd AND b.cmd IS NULL
      LEFT JOIN versions v ON v.cmd = c.cmd AND b.cmd IS NULL
     ORDER BY c.cmd;
END
$fn$;

-- append_batch: the appends of one or more commands, in one call and one
-- transaction. Command i owns expectations (p_expect_end[i-1], p_expect_end[i]]
-- and events (p_event_end[i-1], p_event_end[i]] of the flat arrays (1-based,
-- p_*_end[0] taken as 0); p_expect_cmd and p_event_cmd name each element's
-- command (the same facts, in the form set-based SQL wants). Commands are applied
-- in order, each checked against the versions the ones before it left, so a
-- batch behaves exactly like the same appends made one after another. A conflict
-- is *returned*, never raised, so one command's conflict never fails the others.
--
-- Lock order, the same in every transaction (so no deadlocks): every stream row of
-- the batch in stream_id order, then the log_head row.
CREATE FUNCTION __SCHEMA__.append_batch(
    p_expect_end      int[],
    p_expect_cmd      int[],
    p_expect_streams  text[],
    p_expect_versions bigint[],
    p_event_end       int[],
    p_event_cmd       int[],
    p_event_ids       uuid[],
    p_event_streams   text[],
    p_event_types     text[],
    p_payloads        bytea[],
    p_metadata        bytea[])
RETURNS SETOF __SCHEMA__.append_outcome
LANGUAGE plpgsql
AS $fn$
DECLARE
    v_commands int := coalesce(cardinality(p_expect_end), 0);
    v_e0 int := 0;
    v_v0 int := 0;
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

    -- 3. commands that share no stream are independent: all at once, set-based;
    --    otherwise one after another. (Within one command streams are distinct.)
    IF v_commands > 1
       AND (SELECT count(*) = count(DISTINCT s) FROM unnest(p_expect_streams) AS s) THEN
        RETURN QUERY SELECT * FROM __SCHEMA__.append_independent(
            v_commands, p_expect_cmd, p_expect_streams, p_expect_versions, p_event_cmd,
            p_event_ids, p_event_streams, p_event_types, p_payloads, p_metadata);
        RETURN;
    END IF;
    FOR i IN 1 .. v_commands LOOP
        RETURN QUERY SELECT * FROM __SCHEMA__.append_one(
            i,
            p_expect_streams[v_e0 + 1 : p_expect_end[i]],
            p_expect_versions[v_e0 + 1 : p_expect_end[i]],
            p_event_ids[v_v0 + 1 : p_event_end[i]],
            p_event_streams[v_v0 + 1 : p_event_end[i]],
            p_event_types[v_v0 + 1 : p_event_end[i]],
            p_payloads[v_v0 + 1 : p_event_end[i]],
            p_metadata[v_v0 + 1 : p_event_end[i]]);
        v_e0 := p_expect_end[i];
        v_v0 := p_event_end[i];
    END LOOP;
END
$fn$;
