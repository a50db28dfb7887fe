-- append_disjoint: a batch of commands that share no stream, each expecting one or
-- more streams (a transfer expects two and writes to both): what group commit
-- gathers when commands span several aggregates. append_batch takes these through
-- append_independent, after a lock statement, two slice checks and a count of
-- distinct streams; there a version probe per stream, a join checking that every
-- event is for one of its command's streams, a grouped count of events per
-- stream, a version update and an insert joined back to the expectations. Here, as
-- in append_streams (0013), one UPDATE checks, locks and moves every stream at its
-- expected version, and each event names its expectation by index (the client
-- has checked that it is one of its command's), so the streams of events are not
-- sent, matched or grouped by name: eight arrays instead of eleven.
--
-- A command is all or nothing: when one of its streams is not at its expected
-- version, the streams of it the UPDATE moved are moved back (their rows stay
-- locked by this transaction, as a lock statement would have left them, so no
-- other transaction sees either change). Locks are taken as in append_streams:
-- the rows of streams expected at version 0 are made first, the UPDATE takes the
-- rows in stream_id order, and the position counter comes last. A stream another
-- writer moved to its expected version while the UPDATE waited on an earlier row
-- is passed by (the UPDATE's snapshot had it one behind). Updating it afterwards
-- would lock it after rows later in stream_id order, and deadlock with a writer
-- that holds it and waits for one of those; so the UPDATE runs in a
-- subtransaction, which is rolled back in that case, letting go of its locks,
-- and every row is then locked in order and its version read under the lock, as
-- append_batch does. (Measured: entering the block costs nothing visible next to
-- the commit, 666 against 675 µs a call for a 24-row update, sequential calls.)
-- A success's row carries its first position only (the client adds its events to
-- its expected versions).

-- Whether an array is one-dimensional and numbered from 1 (an empty one is): the
-- functions below read their arrays by index, and an array written in SQL as
-- '[0:1]={a,b}' would otherwise put events on the wrong streams.
CREATE FUNCTION __SCHEMA__.numbered_from_one(p anyarray) RETURNS boolean
LANGUAGE sql IMMUTABLE
AS $fn$ SELECT coalesce(array_ndims(p) = 1 AND array_lower(p, 1) = 1, true) $fn$;

-- The versions of an update's streams after it moved some of them (p_moved:
-- their indexes), for append_disjoint and append_streams below. Those it moved
-- are at their expected versions; the others are read as they are now, not
-- locked (nothing is written for them). No row is version 0: a conflict for an
-- expected later version; for an expected 0 the caller made the row (NULL if
-- not: refused). A stream the update passed by that is at its expected version
-- now was moved there by a writer that committed after the update's snapshot,
-- while it waited on an earlier row; locking it now would take a row after later
-- ones, which deadlocks with a writer holding it and waiting for one of those.
-- That raises SQLSTATE EC001: the caller rolls its update's subtransaction back
-- (letting go of every row it locked) and calls again with p_lock, which locks
-- every row in stream_id order, as append_batch does, and reads the versions
-- under the locks.
CREATE FUNCTION __SCHEMA__.append_versions_now(
    p_caller text, p_streams text[], p_versions bigint[], p_moved int[], p_lock boolean)
RETURNS bigint[]
LANGUAGE plpgsql
AS $fn$
DECLARE
    v_actual bigint[];
BEGIN
    IF p_lock THEN
        PERFORM 1 FROM __SCHEMA__.streams
         WHERE stream_id = ANY (p_streams)
         ORDER BY stream_id
           FOR UPDATE;
    END IF;
    v_actual := ARRAY(
        SELECT CASE WHEN x.i = ANY (p_moved) THEN x.expected
                    ELSE coalesce((SELECT s.version FROM __SCHEMA__.streams s
                                    WHERE s.stream_id = x.sid),
                                  CASE WHEN x.expected <> 0 THEN 0 END) END
          FROM unnest(p_streams, p_versions) WITH ORDINALITY AS x(sid, expected, i)
         ORDER BY x.i);
    IF array_position(v_actual, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'eventcore: %: stream % has no row to lock',
                        p_caller, quote_nullable(p_streams[array_position(v_actual, NULL)]);
    END IF;
    IF NOT p_lock
       AND EXISTS (SELECT 1
                     FROM unnest(p_versions, v_actual) WITH ORDINALITY AS x(expected, actual, i)
                    WHERE x.actual = x.expected AND NOT x.i = ANY (p_moved)) THEN
        RAISE EXCEPTION USING ERRCODE = 'EC001',
            MESSAGE = format('eventcore: %s: a stream moved to its expected version', p_caller);
    END IF;
    RETURN v_actual;
END
$fn$;

ALTER FUNCTION __SCHEMA__.append_versions_now(text, text[], bigint[], int[], boolean)
    SET enable_seqscan = off;
ALTER FUNCTION __SCHEMA__.append_versions_now(text, text[], bigint[], int[], boolean)
    SET plan_cache_mode = force_generic_plan;

CREATE FUNCTION __SCHEMA__.append_disjoint(
    p_expect_end   int[],
    p_streams      text[],
    p_versions     bigint[],
    p_event_expect int[],
    p_ids          uuid[],
    p_types        text[],
    p_payloads     bytea[],
    p_metadata     bytea[])
RETURNS SETOF __SCHEMA__.append_outcome
LANGUAGE plpgsql
AS $fn$
DECLARE
    v_commands int := coalesce(cardinality(p_expect_end), 0);
    v_expects int := coalesce(cardinality(p_streams), 0);
    v_events int := coalesce(cardinality(p_ids), 0);
    v_expect_cmd int[];
    v_added bigint[];
    v_moved int[];
    v_actual bigint[];
    v_bad int[];
    v_n int;
    v_base bigint;
    v_inserted bigint;
    v_out __SCHEMA__.append_outcome[];
BEGIN
    IF coalesce(cardinality(p_versions), 0) <> v_expects
       OR coalesce(cardinality(p_event_expect), 0) <> v_events
       OR coalesce(cardinality(p_types), 0) <> v_events
       OR coalesce(cardinality(p_payloads), 0) <> v_events
       OR coalesce(cardinality(p_metadata), 0) <> v_events
       OR coalesce(p_expect_end[v_commands], 0) <> v_expects
       OR array_position(p_versions, NULL) IS NOT NULL
       -- arrays read by index must be numbered from 1 (see numbered_from_one)
       OR NOT (__SCHEMA__.numbered_from_one(p_expect_end)
               AND __SCHEMA__.numbered_from_one(p_streams)
               AND __SCHEMA__.numbered_from_one(p_versions)
               AND __SCHEMA__.numbered_from_one(p_event_expect)
               AND __SCHEMA__.numbered_from_one(p_ids)
               AND __SCHEMA__.numbered_from_one(p_types)
               AND __SCHEMA__.numbered_from_one(p_payloads)
               AND __SCHEMA__.numbered_from_one(p_metadata))
       OR EXISTS (SELECT 1 FROM generate_subscripts(p_expect_end, 1) AS i
                   WHERE p_expect_end[i] IS NULL
                      OR p_expect_end[i] <= coalesce(p_expect_end[i - 1], 0))
       OR (SELECT count(s) <> v_expects OR count(DISTINCT s) <> v_expects
             FROM unnest(p_streams) AS s) THEN
        RAISE EXCEPTION 'eventcore: append_disjoint: the arrays do not describe % command(s) '
                        'on distinct streams: % expectation(s), % event(s), slice ends %',
                        v_commands, v_expects, v_events, p_expect_end;
    END IF;

    -- each expectation's command, from the slice ends
    v_expect_cmd := ARRAY(SELECT x.i
                            FROM unnest(p_expect_end) WITH ORDINALITY AS x(e_end, i)
                            CROSS JOIN LATERAL generate_series(
                                coalesce(p_expect_end[x.i - 1], 0) + 1, x.e_end) AS g(j)
                           ORDER BY g.j);
    -- Every event names an expectation, and a command's events come together, in
    -- command order (a command's positions are consecutive).
    IF EXISTS (SELECT 1
                 FROM (SELECT e.x, lag(e.x) OVER (ORDER BY e.ord) AS before
                         FROM unnest(p_event_expect) WITH ORDINALITY AS e(x, ord)) AS e
                WHERE e.x IS NULL OR e.x < 1 OR e.x > v_expects
                   OR v_expect_cmd[e.x] < v_expect_cmd[e.before]) THEN
        RAISE EXCEPTION 'eventcore: append_disjoint: event expectations % are not indexes '
                        'into % expectation(s) in command order', p_event_expect, v_expects;
    END IF;
    -- events per expectation
    v_added := ARRAY(SELECT coalesce(c.n, 0)
                       FROM generate_series(1, v_expects) AS g(x)
                       LEFT JOIN (SELECT e.x, count(*) AS n
                                    FROM unnest(p_event_expect) AS e(x)
                                   GROUP BY e.x) AS c ON c.x = g.x
                      ORDER BY g.x);

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
    --    in stream_id order (a stream a command only read moves by 0: locked all the
    --    same). It runs in a subtransaction (the block with an EXCEPTION clause) for
    --    the one case it cannot finish in that order, below.
    BEGIN
        WITH moved AS (
            UPDATE __SCHEMA__.streams s SET version = s.version + w.n
              FROM (SELECT x.i, x.sid, x.expected, v_added[x.i] AS n
                      FROM unnest(p_streams, p_versions) WITH ORDINALITY AS x(sid, expected, i)
                     ORDER BY x.sid) AS w
             WHERE s.stream_id = w.sid AND s.version = w.expected
            RETURNING w.i)
        SELECT coalesce(array_agg(m.i), '{}') INTO v_moved FROM moved AS m;

        IF cardinality(v_moved) = v_expects THEN
            v_actual := p_versions;
        ELSE
            -- raises EC001 if a stream it passed by is at its expected version now
            v_actual := __SCHEMA__.append_versions_now(
                'append_disjoint', p_streams, p_versions, v_moved, false);
        END IF;
    EXCEPTION WHEN SQLSTATE 'EC001' THEN
        -- Every row locked in stream_id order and its version read under the lock
        -- (this subtransaction's locks are gone), then those at their expected
        -- version moved.
        v_actual := __SCHEMA__.append_versions_now('append_disjoint', p_streams, p_versions, '{}', true);
        WITH moved AS (
            UPDATE __SCHEMA__.streams s SET version = s.version + w.n
              FROM (SELECT x.i, x.sid, v_added[x.i] AS n
                      FROM unnest(p_streams, p_versions) WITH ORDINALITY AS x(sid, expected, i)
                     WHERE v_actual[x.i] = x.expected) AS w
             WHERE s.stream_id = w.sid
            RETURNING w.i)
        SELECT coalesce(array_agg(m.i), '{}') INTO v_moved FROM moved AS m;
    END;

    IF cardinality(v_moved) = v_expects THEN
        v_bad := '{}';
    ELSE
        v_bad := ARRAY(SELECT DISTINCT v_expect_cmd[x.i]
                         FROM unnest(p_versions, v_actual) WITH ORDINALITY
                              AS x(expected, actual, i)
                        WHERE x.actual <> x.expected);
        -- 3. a command with a conflict writes nothing: what the UPDATE moved of its
        --    streams goes back (still locked by this transaction)
        UPDATE __SCHEMA__.streams s SET version = s.version - w.n
          FROM (SELECT x.sid, v_added[x.i] AS n
                  FROM unnest(p_streams) WITH ORDINALITY AS x(sid, i)
                 WHERE x.i = ANY (v_moved) AND v_expect_cmd[x.i] = ANY (v_bad)
                   AND v_added[x.i] > 0) AS w
         WHERE s.stream_id = w.sid;
    END IF;

    SELECT count(*) INTO v_n FROM unnest(p_event_expect) AS e(x)
     WHERE v_expect_cmd[e.x] <> ALL (v_bad);

    -- 4. the outcome rows, numbered relative to the batch's first position (not
    --    known yet): first_position holds the rank of a command's first event among
    --    the events written; a conflict names the command's first stream (by id)
    --    not at its expected version.
    v_out := ARRAY(
        WITH firsts AS (
            SELECT e.cmd, min(e.rank) AS first
              FROM (SELECT v_expect_cmd[u.x] AS cmd, row_number() OVER (ORDER BY u.ord) AS rank
                      FROM unnest(p_event_expect) WITH ORDINALITY AS u(x, ord)
                     WHERE v_expect_cmd[u.x] <> ALL (v_bad)) AS e
             GROUP BY e.cmd
        ), conflicts AS (
            SELECT DISTINCT ON (v_expect_cmd[x.i]) v_expect_cmd[x.i] AS cmd,
                   x.sid, x.expected, x.actual
              FROM unnest(p_streams, p_versions, v_actual) WITH ORDINALITY
                   AS x(sid, expected, actual, i)
             WHERE x.actual <> x.expected
             ORDER BY v_expect_cmd[x.i], x.sid
        )
        SELECT ROW(c.cmd::int, f.first, NULL, NULL, b.sid, b.expected, b.actual)
               ::__SCHEMA__.append_outcome
          FROM generate_series(1, v_commands) AS c(cmd)
          LEFT JOIN conflicts b ON b.cmd = c.cmd
          LEFT JOIN firsts f ON f.cmd = c.cmd AND b.cmd IS NULL
         ORDER BY c.cmd);

    IF v_n > 0 THEN
        -- 5. the position counter last: its row stays locked until the commit
        UPDATE __SCHEMA__.log_head SET position = position + v_n WHERE id = 1
        RETURNING position - v_n INTO v_base;
        INSERT INTO __SCHEMA__.events
               (position, event_id, stream_id, stream_version, event_type, payload, metadata)
        SELECT v_base + row_number() OVER (ORDER BY u.ord), u.eid, p_streams[u.x],
               p_versions[u.x] + row_number() OVER (PARTITION BY u.x ORDER BY u.ord),
               u.typ, u.pl, u.md
          FROM unnest(p_event_expect, p_ids, p_types, p_payloads, p_metadata) WITH ORDINALITY
               AS u(x, eid, typ, pl, md, ord)
         WHERE v_expect_cmd[u.x] <> ALL (v_bad);
        GET DIAGNOSTICS v_inserted = ROW_COUNT;
        IF v_inserted <> v_n THEN
            RAISE EXCEPTION 'eventcore: append_disjoint: inserted % of the % event(s) to '
                            'write; refusing to number the others', v_inserted, v_n;
        END IF;
        -- Wake tailing readers; delivered only when (and if) the transaction commits.
        PERFORM pg_notify('__CHANNEL__', (v_base + v_n)::text);
    END IF;
    RETURN QUERY SELECT o.command, v_base + o.first_position, o.out_streams, o.out_versions,
                        o.conflict_stream, o.conflict_expected, o.conflict_actual
                   FROM unnest(v_out) AS o;
END
$fn$;

-- As the other array-path append functions (0011-0013): never a sequential scan,
-- generic plans.
ALTER FUNCTION __SCHEMA__.append_disjoint(int[], text[], bigint[], int[], uuid[], text[], bytea[], bytea[])
    SET enable_seqscan = off;
ALTER FUNCTION __SCHEMA__.append_disjoint(int[], text[], bigint[], int[], uuid[], text[], bytea[], bytea[])
    SET plan_cache_mode = force_generic_plan;

-- append_streams (0013), restated with two changes that append_disjoint above
-- also has. Its version update took a stream another writer had moved to the
-- expected version meanwhile in a second UPDATE, after rows later in stream_id
-- order: a deadlock with a writer that held that stream and waited for one of
-- them. Now that case rolls the update's subtransaction back and takes every row
-- again in order. And arrays that are not one-dimensional and numbered from 1
-- are refused (it reads them by index; a [0:1] array wrote events to the wrong
-- streams).

CREATE OR REPLACE FUNCTION __SCHEMA__.append_streams(
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
       -- arrays read by index must be numbered from 1 (see numbered_from_one)
       OR NOT (__SCHEMA__.numbered_from_one(p_streams)
               AND __SCHEMA__.numbered_from_one(p_versions)
               AND __SCHEMA__.numbered_from_one(p_event_end)
               AND __SCHEMA__.numbered_from_one(p_ids)
               AND __SCHEMA__.numbered_from_one(p_types)
               AND __SCHEMA__.numbered_from_one(p_payloads)
               AND __SCHEMA__.numbered_from_one(p_metadata))
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
    --    its stream by 0, which locks it all the same. It runs in a subtransaction
    --    (the block with an EXCEPTION clause) for the one case it cannot finish in
    --    that order, below.
    BEGIN
        WITH moved AS (
            UPDATE __SCHEMA__.streams s SET version = s.version + w.n
              FROM (SELECT x.i, x.sid, x.expected,
                           x.e_end - coalesce(p_event_end[x.i - 1], 0) AS n
                      FROM unnest(p_streams, p_versions, p_event_end) WITH ORDINALITY
                           AS x(sid, expected, e_end, i)
                     ORDER BY x.sid) AS w
             WHERE s.stream_id = w.sid AND s.version = w.expected
            RETURNING w.i)
        SELECT coalesce(array_agg(m.i), '{}') INTO v_moved FROM moved AS m;

        IF cardinality(v_moved) = v_commands THEN
            v_actual := p_versions;
        ELSE
            -- raises EC001 if a stream it passed by is at its expected version now
            v_actual := __SCHEMA__.append_versions_now(
                'append_streams', p_streams, p_versions, v_moved, false);
        END IF;
    EXCEPTION WHEN SQLSTATE 'EC001' THEN
        -- Every row locked in stream_id order and its version read under the lock
        -- (this subtransaction's locks are gone), then those at their expected
        -- version moved.
        v_actual := __SCHEMA__.append_versions_now('append_streams', p_streams, p_versions, '{}', true);
        UPDATE __SCHEMA__.streams s SET version = s.version + w.n
          FROM (SELECT x.sid, x.e_end - coalesce(p_event_end[x.i - 1], 0) AS n
                  FROM unnest(p_streams, p_versions, p_event_end) WITH ORDINALITY
                       AS x(sid, expected, e_end, i)
                 WHERE v_actual[x.i] = x.expected) AS w
         WHERE s.stream_id = w.sid;
    END;
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

-- CREATE OR REPLACE drops a function's settings: set again.
ALTER FUNCTION __SCHEMA__.append_streams(text[], bigint[], int[], uuid[], text[], bytea[], bytea[])
    SET enable_seqscan = off;
ALTER FUNCTION __SCHEMA__.append_streams(text[], bigint[], int[], uuid[], text[], bytea[], bytea[])
    SET plan_cache_mode = force_generic_plan;
