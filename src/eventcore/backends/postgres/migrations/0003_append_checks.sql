-- append_batch checks its arrays before it hands out a position. The store builds
-- them from validated requests, so none of these checks fires in normal use; they
-- guard the gapless log against any other caller (or a bug): a position handed
-- out for a row that was not inserted would stay a hole in the log forever, and an
-- event written to a stream the batch did not lock would bypass its version check.

-- The slices of one kind of element (expectations or events): p_end[i] ends
-- command i's slice, p_cmd names each element's command; both must agree, cover
-- exactly p_len elements, and never run backwards.
CREATE FUNCTION __SCHEMA__.check_slices(p_what text, p_end int[], p_cmd int[], p_len int)
RETURNS void
LANGUAGE plpgsql
AS $fn$
DECLARE
    v_commands int := coalesce(cardinality(p_end), 0);
BEGIN
    IF coalesce(cardinality(p_cmd), 0) <> p_len
       OR coalesce(p_end[v_commands], 0) <> p_len
       OR EXISTS (SELECT 1 FROM generate_subscripts(p_end, 1) AS i
                   WHERE p_end[i] IS NULL OR p_end[i] < coalesce(p_end[i - 1], 0))
       OR EXISTS (SELECT 1 FROM unnest(p_cmd) WITH ORDINALITY AS c(cmd, i)
                   WHERE c.cmd IS NULL OR c.cmd NOT BETWEEN 1 AND v_commands
                      OR c.i <= coalesce(p_end[c.cmd - 1], 0) OR c.i > p_end[c.cmd]) THEN
        RAISE EXCEPTION 'eventcore: append_batch: the % arrays do not describe % command(s): '
                        '% element(s), slice ends %', p_what, v_commands, p_len, p_end;
    END IF;
END
$fn$;

-- As in 0001, plus: every event is for one of the command's expected streams (whose
-- row append_batch created and locked), and every event given was inserted.
CREATE OR REPLACE FUNCTION __SCHEMA__.append_one(
    p_command int, p_streams text[], p_versions bigint[], p_ids uuid[],
    p_event_streams text[], p_types text[], p_payloads bytea[], p_metadata bytea[])
RETURNS SETOF __SCHEMA__.append_outcome
LANGUAGE plpgsql
AS $fn$
DECLARE
    v_n int := coalesce(cardinality(p_ids), 0);
    v_first bigint;
    v_bad record;
    v_stray text;
    v_inserted bigint;
BEGIN
    SELECT u.sid INTO v_stray
      FROM unnest(p_event_streams) AS u(sid)
     WHERE NOT coalesce(u.sid = ANY (p_streams), false)
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'eventcore: append_batch: an event of command % is for stream %, '
                        'which is not among its expected streams', p_command, quote_nullable(v_stray);
    END IF;

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
        GET DIAGNOSTICS v_inserted = ROW_COUNT;
        IF v_inserted <> v_n THEN
            RAISE EXCEPTION 'eventcore: append_batch: inserted % of the % event(s) of command %; '
                            'refusing to number the others', v_inserted, v_n, p_command;
        END IF;

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

-- As in 0001, plus the same two checks, per command.
CREATE OR REPLACE FUNCTION __SCHEMA__.append_independent(
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
    v_stray record;
    v_inserted bigint;
BEGIN
    SELECT e.cmd, e.sid INTO v_stray
      FROM unnest(p_event_cmd, p_event_streams) AS e(cmd, sid)
      LEFT JOIN unnest(p_expect_cmd, p_expect_streams) AS x(cmd, sid)
             ON x.cmd = e.cmd AND x.sid = e.sid
     WHERE x.cmd IS NULL
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'eventcore: append_batch: an event of command % is for stream %, '
                        'which is not among its expected streams',
                        v_stray.cmd, quote_nullable(v_stray.sid);
    END IF;

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
        GET DIAGNOSTICS v_inserted = ROW_COUNT;
        IF v_inserted <> v_n THEN
            RAISE EXCEPTION 'eventcore: append_batch: inserted % of the % event(s) to write; '
                            'refusing to number the others', v_inserted, v_n;
        END IF;

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

-- As in 0001, plus: the arrays are checked to describe the commands consistently
-- (parallel arrays of equal length, slices and command numbers that agree), so the
-- one-by-one and the set-based paths see the same commands.
CREATE OR REPLACE FUNCTION __SCHEMA__.append_batch(
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
    v_expects int := coalesce(cardinality(p_expect_streams), 0);
    v_events int := coalesce(cardinality(p_event_ids), 0);
    v_e0 int := 0;
    v_v0 int := 0;
BEGIN
    IF v_commands <> coalesce(cardinality(p_event_end), 0) THEN
        RAISE EXCEPTION 'append_batch: p_expect_end and p_event_end differ in length';
    END IF;
    IF coalesce(cardinality(p_expect_versions), 0) <> v_expects
       OR coalesce(cardinality(p_event_streams), 0) <> v_events
       OR coalesce(cardinality(p_event_types), 0) <> v_events
       OR coalesce(cardinality(p_payloads), 0) <> v_events
       OR coalesce(cardinality(p_metadata), 0) <> v_events THEN
        RAISE EXCEPTION 'eventcore: append_batch: the expectation arrays or the event '
                        'arrays differ in length';
    END IF;
    PERFORM __SCHEMA__.check_slices('expectation', p_expect_end, p_expect_cmd, v_expects);
    PERFORM __SCHEMA__.check_slices('event', p_event_end, p_event_cmd, v_events);

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
