-- Appends whose events arrive by COPY (docs/adr/0008-copy-appends.md). For a big
-- batch the store streams the events into its session's staging table,
--     pg_temp.eventcore_staged_events
--         (ord int, cmd int, event_id uuid, stream_id text, event_type text,
--          payload bytea, metadata bytea)   ON COMMIT DELETE ROWS,
-- (``ord`` numbers the batch's events 1..n in order, ``cmd`` is each event's
-- command) and calls append_staged with the expectations, in the same transaction.
-- append_staged does what append_batch does with the same commands: the same
-- checks, the same locks in the same order, the same positions, versions, outcome
-- rows and notification. Only the source of the event rows differs.

-- As append_independent (0003), with the events read from the staging table.
CREATE FUNCTION __SCHEMA__.append_independent_staged(
    p_commands int, p_expect_cmd int[], p_expect_streams text[], p_expect_versions bigint[])
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
    SELECT e.cmd, e.stream_id AS sid INTO v_stray
      FROM pg_temp.eventcore_staged_events AS e
      LEFT JOIN unnest(p_expect_cmd, p_expect_streams) AS x(cmd, sid)
             ON x.cmd = e.cmd AND x.sid = e.stream_id
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

    SELECT count(*) INTO v_n
      FROM pg_temp.eventcore_staged_events AS e
     WHERE e.cmd <> ALL (v_bad);
    IF v_n > 0 THEN
        UPDATE __SCHEMA__.log_head SET position = position + v_n WHERE id = 1
        RETURNING position - v_n INTO v_base;

        INSERT INTO __SCHEMA__.events
               (position, event_id, stream_id, stream_version, event_type, payload, metadata)
        SELECT v_base + row_number() OVER (ORDER BY u.ord), u.event_id, u.stream_id,
               s.version + row_number() OVER (PARTITION BY u.stream_id ORDER BY u.ord),
               u.event_type, u.payload, u.metadata
          FROM pg_temp.eventcore_staged_events AS u
          JOIN __SCHEMA__.streams s ON s.stream_id = u.stream_id
         WHERE u.cmd <> ALL (v_bad);
        GET DIAGNOSTICS v_inserted = ROW_COUNT;
        IF v_inserted <> v_n THEN
            RAISE EXCEPTION 'eventcore: append_batch: inserted % of the % event(s) to write; '
                            'refusing to number the others', v_inserted, v_n;
        END IF;

        UPDATE __SCHEMA__.streams s SET version = s.version + c.n
          FROM (SELECT u.stream_id AS sid, count(*) AS n
                  FROM pg_temp.eventcore_staged_events AS u
                 WHERE u.cmd <> ALL (v_bad)
                 GROUP BY u.stream_id) AS c
         WHERE s.stream_id = c.sid;
        PERFORM pg_notify('__CHANNEL__', (v_base + v_n)::text);
    END IF;

    RETURN QUERY
    WITH firsts AS (
        SELECT e.cmd, v_base + min(e.rank) AS first_position
          FROM (SELECT u.cmd, row_number() OVER (ORDER BY u.ord) AS rank
                  FROM pg_temp.eventcore_staged_events AS u
                 WHERE u.cmd <> ALL (v_bad)) AS e
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

-- append_batch's arguments without the event arrays, whose rows are staged.
-- A single command, or commands that share no stream, go set-based through
-- append_independent_staged: for a single command it computes exactly what
-- append_one does (positions first..first+n-1 in event order, versions counted
-- per stream, one notification of the last position). Commands that share a
-- stream must see each other's versions one after another, as append_one does
-- in append_batch's loop: those batches (rare among big ones) are handed to
-- append_batch itself, with the staged rows as its arrays.
CREATE FUNCTION __SCHEMA__.append_staged(
    p_expect_end      int[],
    p_expect_cmd      int[],
    p_expect_streams  text[],
    p_expect_versions bigint[],
    p_event_end       int[])
RETURNS SETOF __SCHEMA__.append_outcome
LANGUAGE plpgsql
AS $fn$
DECLARE
    v_commands int := coalesce(cardinality(p_expect_end), 0);
    v_expects int := coalesce(cardinality(p_expect_streams), 0);
    v_event_cmd int[];
    v_numbered boolean;
    v_ids uuid[];
    v_streams text[];
    v_types text[];
    v_payloads bytea[];
    v_metadata bytea[];
BEGIN
    -- the staged rows must be numbered 1..n, each once: the numbers order the log
    SELECT coalesce(array_agg(e.cmd ORDER BY e.ord), '{}'),
           count(*) = count(DISTINCT e.ord)
           AND coalesce(min(e.ord) = 1 AND max(e.ord) = count(*), true)
      INTO v_event_cmd, v_numbered
      FROM pg_temp.eventcore_staged_events AS e;
    IF NOT v_numbered THEN
        RAISE EXCEPTION 'eventcore: append_staged: the staged events are not numbered 1..n';
    END IF;
    IF v_commands <> coalesce(cardinality(p_event_end), 0) THEN
        RAISE EXCEPTION 'append_batch: p_expect_end and p_event_end differ in length';
    END IF;
    IF coalesce(cardinality(p_expect_versions), 0) <> v_expects THEN
        RAISE EXCEPTION 'eventcore: append_batch: the expectation arrays or the event '
                        'arrays differ in length';
    END IF;
    PERFORM __SCHEMA__.check_slices('expectation', p_expect_end, p_expect_cmd, v_expects);
    PERFORM __SCHEMA__.check_slices('event', p_event_end, v_event_cmd,
                                    cardinality(v_event_cmd));

    IF v_commands > 1
       AND (SELECT count(*) <> count(DISTINCT s) FROM unnest(p_expect_streams) AS s) THEN
        SELECT array_agg(e.event_id ORDER BY e.ord), array_agg(e.stream_id ORDER BY e.ord),
               array_agg(e.event_type ORDER BY e.ord), array_agg(e.payload ORDER BY e.ord),
               array_agg(e.metadata ORDER BY e.ord)
          INTO v_ids, v_streams, v_types, v_payloads, v_metadata
          FROM pg_temp.eventcore_staged_events AS e;
        RETURN QUERY SELECT * FROM __SCHEMA__.append_batch(
            p_expect_end, p_expect_cmd, p_expect_streams, p_expect_versions, p_event_end,
            v_event_cmd, coalesce(v_ids, '{}'), coalesce(v_streams, '{}'),
            coalesce(v_types, '{}'), coalesce(v_payloads, '{}'), coalesce(v_metadata, '{}'));
        RETURN;
    END IF;

    -- as append_batch: every participating stream gets a row, locked in stream_id order
    INSERT INTO __SCHEMA__.streams (stream_id, version)
    SELECT DISTINCT s, 0 FROM unnest(p_expect_streams) AS s ORDER BY 1
    ON CONFLICT DO NOTHING;

    PERFORM 1 FROM __SCHEMA__.streams
     WHERE stream_id = ANY (p_expect_streams)
     ORDER BY stream_id
       FOR UPDATE;

    RETURN QUERY SELECT * FROM __SCHEMA__.append_independent_staged(
        v_commands, p_expect_cmd, p_expect_streams, p_expect_versions);
END
$fn$;
