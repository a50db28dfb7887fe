-- append_streams: a batch of commands that each expect one stream and write only
-- to it, no two on the same stream: what group commit gathers from most workloads
-- (one aggregate per command, many aggregates). append_batch handles any batch,
-- and pays for it: per-event command and stream arrays, two slice checks, a check
-- that every event is for one of its command's streams, a lock statement and then
-- a version probe per stream, a grouped count of events per stream. Here a
-- command's stream is its events' stream, so none of that is needed: the
-- client sends seven arrays instead of eleven (fewer values for the driver to
-- encode), the stream rows are locked and their versions read by one statement,
-- and each stream's event count comes from the slice ends.
--
-- Same protocol as append_independent (0012): the stream rows first (made for the
-- streams expected at version 0, then locked in stream_id order, as every append
-- function does, so none can deadlock with another), the new versions and the
-- outcome rows next, the position counter last. A command whose stream is not at
-- its expected version gets its conflict row and writes nothing; the others go
-- ahead, numbered in command order. A success's row carries its first position
-- only; the client adds its events to its expected version.
--
-- The version update finds each row by its key alone: with the other functions'
-- extra `stream_id = ANY (p_streams)` the generic plan probed the index once per
-- command with both conditions, sorting the whole array each time (0.39 ms of a
-- 32-command call, 0.15 ms without).
--
-- Measured against append_batch on the same batches: 32 one-event commands, 1.70
-- -> 1.58 ms a call (sequential calls); 64 tasks of one-event appends through
-- group commit (benchmarks/append_server_cpu.py, 60,000 appends, three
-- interleaved pairs) 17,596-19,212 -> 19,498-20,852 appends/s, server CPU 46-51
-- -> 40-43 µs per append.

CREATE FUNCTION __SCHEMA__.append_streams(
    p_streams   text[],
    p_versions  bigint[],
    p_event_end int[],
    p_ids       uuid[],
    p_types     text[],
    p_payloads  bytea[],
    p_metadata  bytea[])
RETURNS SETOF __SCHEMA__.append_outcome
LANGUAGE plpgsql
AS $fn$
DECLARE
    v_commands int := coalesce(cardinality(p_streams), 0);
    v_events int := coalesce(cardinality(p_ids), 0);
    v_locked text[];
    v_locked_versions bigint[];
    v_actual bigint[];
    v_event_cmd int[];
    v_n int;
    v_base bigint;
    v_inserted bigint;
    v_out __SCHEMA__.append_outcome[];
BEGIN
    IF coalesce(cardinality(p_versions), 0) <> v_commands
       OR coalesce(cardinality(p_event_end), 0) <> v_commands
       OR coalesce(cardinality(p_types), 0) <> v_events
       OR coalesce(cardinality(p_payloads), 0) <> v_events
       OR coalesce(cardinality(p_metadata), 0) <> v_events
       OR coalesce(p_event_end[v_commands], 0) <> v_events
       OR array_position(p_versions, NULL) IS NOT NULL
       OR EXISTS (SELECT 1 FROM generate_subscripts(p_event_end, 1) AS i
                   WHERE p_event_end[i] IS NULL OR p_event_end[i] < coalesce(p_event_end[i - 1], 0))
       OR (SELECT count(s) <> v_commands OR count(DISTINCT s) <> v_commands
             FROM unnest(p_streams) AS s) THEN
        RAISE EXCEPTION 'eventcore: append_streams: the arrays do not describe % command(s) on '
                        'as many distinct streams: % event(s), slice ends %',
                        v_commands, v_events, p_event_end;
    END IF;

    -- 1. every stream expected empty gets a row to lock (version 0 = empty stream)
    IF 0 = ANY (p_versions) THEN
        INSERT INTO __SCHEMA__.streams (stream_id, version)
        SELECT x.sid, 0
          FROM unnest(p_streams, p_versions) AS x(sid, expected)
         WHERE x.expected = 0
         ORDER BY 1
        ON CONFLICT DO NOTHING;
    END IF;

    -- 2. lock them all in stream_id order, reading their versions
    SELECT array_agg(l.stream_id), array_agg(l.version) INTO v_locked, v_locked_versions
      FROM (SELECT s.stream_id, s.version
              FROM __SCHEMA__.streams s
             WHERE s.stream_id = ANY (p_streams)
             ORDER BY s.stream_id
               FOR UPDATE) AS l;

    -- Each command's stream version, in command order. A stream with no row is at
    -- version 0: a conflict for an expected later version. For an expected 0 the
    -- row was made above; NULL if it was not.
    v_actual := ARRAY(SELECT coalesce(l.version, CASE WHEN x.expected <> 0 THEN 0 END)
                        FROM unnest(p_streams, p_versions) WITH ORDINALITY AS x(sid, expected, i)
                        LEFT JOIN unnest(v_locked, v_locked_versions) AS l(sid, version)
                               ON l.sid = x.sid
                       ORDER BY x.i);
    IF array_position(v_actual, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'eventcore: append_streams: stream % has no row to lock',
                        quote_nullable(p_streams[array_position(v_actual, NULL)]);
    END IF;

    -- 3. the new versions of the streams whose command goes ahead
    SELECT coalesce(sum(x.e_end - coalesce(p_event_end[x.i - 1], 0)), 0) INTO v_n
      FROM unnest(p_versions, v_actual, p_event_end) WITH ORDINALITY AS x(expected, actual, e_end, i)
     WHERE x.actual = x.expected;
    IF v_n > 0 THEN
        UPDATE __SCHEMA__.streams s SET version = w.actual + w.n
          FROM (SELECT x.sid, x.actual, x.e_end - coalesce(p_event_end[x.i - 1], 0) AS n
                  FROM unnest(p_streams, p_versions, v_actual, p_event_end) WITH ORDINALITY
                       AS x(sid, expected, actual, e_end, i)
                 WHERE x.actual = x.expected) AS w
         WHERE s.stream_id = w.sid AND w.n > 0;
    END IF;

    -- 4. the outcome rows, numbered relative to the batch's first position (not
    --    known yet): first_position holds the rank of a command's first event
    --    among the events written.
    v_out := ARRAY(
        SELECT CASE
                   WHEN o.actual = o.expected THEN
                       ROW(o.i::int, CASE WHEN o.n > 0 THEN o.written - o.n + 1 END,
                           NULL, NULL, NULL, NULL, NULL)::__SCHEMA__.append_outcome
                   ELSE
                       ROW(o.i::int, NULL, NULL, NULL, o.sid, o.expected, o.actual)
                           ::__SCHEMA__.append_outcome
               END
          FROM (SELECT x.i, x.sid, x.expected, x.actual,
                       x.e_end - coalesce(p_event_end[x.i - 1], 0) AS n,
                       sum(CASE WHEN x.actual = x.expected
                                THEN x.e_end - coalesce(p_event_end[x.i - 1], 0) ELSE 0 END)
                           OVER (ORDER BY x.i) AS written
                  FROM unnest(p_streams, p_versions, v_actual, p_event_end) WITH ORDINALITY
                       AS x(sid, expected, actual, e_end, i)) AS o
         ORDER BY o.i);

    IF v_n > 0 THEN
        -- each event's command, from the slice ends
        v_event_cmd := ARRAY(SELECT x.i
                               FROM unnest(p_event_end) WITH ORDINALITY AS x(e_end, i)
                               CROSS JOIN LATERAL generate_series(
                                   coalesce(p_event_end[x.i - 1], 0) + 1, x.e_end) AS g(j)
                              ORDER BY x.i, g.j);

        -- 5. the position counter last: its row stays locked until the commit
        UPDATE __SCHEMA__.log_head SET position = position + v_n WHERE id = 1
        RETURNING position - v_n INTO v_base;
        INSERT INTO __SCHEMA__.events
               (position, event_id, stream_id, stream_version, event_type, payload, metadata)
        SELECT v_base + row_number() OVER (ORDER BY e.ord), e.eid, p_streams[e.cmd],
               v_actual[e.cmd] + e.ord - coalesce(p_event_end[e.cmd - 1], 0),
               e.typ, e.pl, e.md
          FROM unnest(v_event_cmd, p_ids, p_types, p_payloads, p_metadata) WITH ORDINALITY
               AS e(cmd, eid, typ, pl, md, ord)
         WHERE v_actual[e.cmd] = p_versions[e.cmd];
        GET DIAGNOSTICS v_inserted = ROW_COUNT;
        IF v_inserted <> v_n THEN
            RAISE EXCEPTION 'eventcore: append_streams: inserted % of the % event(s) to write; '
                            'refusing to number the others', v_inserted, v_n;
        END IF;
        -- Wake tailing readers; delivered only when (and if) the transaction commits.
        PERFORM pg_notify('__CHANNEL__', (v_base + v_n)::text);
    END IF;
    RETURN QUERY SELECT o.command, v_base + o.first_position, o.out_streams, o.out_versions,
                        o.conflict_stream, o.conflict_expected, o.conflict_actual
                   FROM unnest(v_out) AS o;
END
$fn$;

-- As the other array-path append functions (0011, 0012): never a sequential scan,
-- generic plans.
ALTER FUNCTION __SCHEMA__.append_streams(text[], bigint[], int[], uuid[], text[], bytea[], bytea[])
    SET enable_seqscan = off;
ALTER FUNCTION __SCHEMA__.append_streams(text[], bigint[], int[], uuid[], text[], bytea[], bytea[])
    SET plan_cache_mode = force_generic_plan;
