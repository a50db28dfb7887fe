-- append_streams: a batch of commands that each expect one stream and write only
-- to it, no two on the same stream: what group commit gathers from most workloads
-- (one aggregate per command, many aggregates). append_batch handles any batch,
-- and pays for it: per-event command and stream arrays, two slice checks, a check
-- that every event is for one of its command's streams, a lock statement, a
-- version probe per stream, a grouped count of events per stream, a version
-- update. Here a command's stream is its events' stream, so the client sends
-- seven arrays instead of eleven (fewer values for the driver to encode), and one
-- UPDATE checks, locks and moves every stream at its expected version, as
-- append_to_stream (0008) does for one: `WHERE version = expected`, each event
-- count from the slice ends.
--
-- Locks: the rows of the streams expected at version 0 are made first, as in
-- append_batch; the UPDATE then takes the rows in stream_id order (its sorted
-- subquery drives a loop of key probes), the order every append function locks
-- in, and the position counter comes last, as in 0012. A command whose stream is
-- not at its expected version gets its conflict row and writes nothing (its row
-- is read, not locked); the others go ahead, numbered in command order. Under
-- READ COMMITTED the UPDATE sees each row as of its start, or as the writer it
-- waited for left it: a stream another transaction moved to the expected version
-- while the UPDATE waited on an earlier row is passed by, so a stream found at its
-- expected version afterwards is updated again, until it moves or is not at that
-- version. A success's row carries its first position only; the client adds its
-- events to its expected version.
--
-- The version update finds each row by its key alone: with the other functions'
-- extra `stream_id = ANY (p_streams)` a generic plan probes the index with both
-- conditions, sorting the whole array for every command.
--
-- Measured against append_batch on the same batches, 64 tasks of one-event
-- appends through group commit (benchmarks/append_server_cpu.py, 60,000 appends,
-- interleaved pairs): with a lock statement before the update, 17,596-19,212 ->
-- 19,498-20,852 appends/s, server CPU 46-51 -> 40-43 µs per append; the update
-- alone then took that to 22,998-23,394 against 21,221-22,021 appends/s, server
-- CPU 39 -> 34 µs.

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
    v_moved int[];
    v_again int[];
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

    -- 2. One statement checks, locks and moves every stream at its expected version,
    --    in stream_id order (the order every append function locks in: the sorted
    --    subquery drives a loop of key probes). A command with no events moves
    --    its stream by 0, which locks it all the same.
    WITH moved AS (
        UPDATE __SCHEMA__.streams s SET version = s.version + w.n
          FROM (SELECT x.i, x.sid, x.expected, x.e_end - coalesce(p_event_end[x.i - 1], 0) AS n
                  FROM unnest(p_streams, p_versions, p_event_end) WITH ORDINALITY
                       AS x(sid, expected, e_end, i)
                 ORDER BY x.sid) AS w
         WHERE s.stream_id = w.sid AND s.version = w.expected
        RETURNING w.i)
    SELECT coalesce(array_agg(m.i), '{}') INTO v_moved FROM moved AS m;

    IF cardinality(v_moved) = v_commands THEN
        v_actual := p_versions;
    ELSE
        LOOP
            -- The others' streams as they are now: nothing is written for them, so
            -- nothing is locked. No row is version 0: a conflict for an expected
            -- later version; for an expected 0 the row was made above (NULL if not).
            v_actual := ARRAY(
                SELECT CASE WHEN x.i = ANY (v_moved) THEN x.expected
                            ELSE coalesce((SELECT s.version FROM __SCHEMA__.streams s
                                            WHERE s.stream_id = x.sid),
                                          CASE WHEN x.expected <> 0 THEN 0 END) END
                  FROM unnest(p_streams, p_versions) WITH ORDINALITY AS x(sid, expected, i)
                 ORDER BY x.i);
            IF array_position(v_actual, NULL) IS NOT NULL THEN
                RAISE EXCEPTION 'eventcore: append_streams: stream % has no row to lock',
                                quote_nullable(p_streams[array_position(v_actual, NULL)]);
            END IF;
            -- A stream that reached its expected version after the UPDATE's snapshot
            -- (a writer committed meanwhile) is tried again, as append_to_stream
            -- does; versions only grow, so this ends.
            SELECT array_agg(x.i) INTO v_again
              FROM unnest(p_versions, v_actual) WITH ORDINALITY AS x(expected, actual, i)
             WHERE x.actual = x.expected AND NOT x.i = ANY (v_moved);
            EXIT WHEN v_again IS NULL;
            WITH moved AS (
                UPDATE __SCHEMA__.streams s SET version = s.version + w.n
                  FROM (SELECT x.i, x.sid, x.expected,
                               x.e_end - coalesce(p_event_end[x.i - 1], 0) AS n
                          FROM unnest(p_streams, p_versions, p_event_end) WITH ORDINALITY
                               AS x(sid, expected, e_end, i)
                         WHERE x.i = ANY (v_again)
                         ORDER BY x.sid) AS w
                 WHERE s.stream_id = w.sid AND s.version = w.expected
                RETURNING w.i)
            SELECT v_moved || coalesce(array_agg(m.i), '{}') INTO v_moved FROM moved AS m;
        END LOOP;
    END IF;
    SELECT coalesce(sum(x.e_end - coalesce(p_event_end[x.i - 1], 0)), 0) INTO v_n
      FROM unnest(p_versions, v_actual, p_event_end) WITH ORDINALITY AS x(expected, actual, e_end, i)
     WHERE x.actual = x.expected;

    -- 3. the outcome rows, numbered relative to the batch's first position (not
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

        -- 4. the position counter last: its row stays locked until the commit
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
