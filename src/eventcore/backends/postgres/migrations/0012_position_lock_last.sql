-- The position counter's row last. An append locks log_head's row to number its
-- events, and holds that lock until its transaction commits: it is what keeps the
-- log's order the commit order. So whatever an append function does after taking
-- it, every other append waits for, where what it does before can run while
-- another batch holds the counter (the store pipelines group commits: a second
-- batch is on the server while the first commits). append_independent and
-- append_one took the counter, then inserted the events, updated the streams'
-- versions and built their outcome rows; none of the last two needs a position.
-- Now they update the versions and build the outcomes (relative to the first
-- position) first, then take the counter, insert the events and notify.
-- append_to_stream already took the counter last. The stream rows are locked by
-- then in every path, so the order of the two writes changes nothing a
-- concurrent transaction can see; the lock order (streams, then log_head) is as
-- before. 64 tasks of one-event appends through group commit, two batches under
-- way (benchmarks/append_server_cpu.py, 60,000 appends, interleaved runs):
-- 16,473 / 15,612 / 16,570 -> 16,926 / 17,129 / 17,294 appends/s.
--
-- And the array path's functions run with generic plans. PL/pgSQL plans each
-- statement for its parameters' values on a connection's first five calls and
-- then keeps a generic plan only where the planner prices it no dearer; for
-- statements over array parameters of unknown length it often does not, and they
-- are planned again on every call. The plans do not depend on the values (the
-- arrays are unnested and every table is reached by its key, scans being off), so
-- planning them once is all that is needed. Same benchmark: 14,666-16,311 ->
-- 16,322-16,933 appends/s, 56-61 -> 53-55 µs of server CPU per append. Not the
-- COPY path's functions (see 0011): their staging table's row count is what the
-- planner needs to see.
--
-- And outcomes the client completes, where it asks for them. The outcome row of a
-- command that succeeds names its streams and their new versions; those are its
-- expected versions plus its events per stream, which the client knows, and
-- building them (a grouped join per batch, then encoded, sent and decoded) was
-- about a tenth of the server's time for a batch of transfers. append_batch,
-- append_run and append_independent get an overload with a last argument,
-- p_lean: true answers a success with its first position alone. The signatures
-- without it keep their answers and now call the new ones with false: processes
-- still running an earlier eventcore call append_batch on a schema a newer one
-- has migrated, and read every success's versions from its row.
--
-- Two-stream commands at 64 tasks, warm cache (eventcore bench steady_transfers,
-- two interleaved pairs): 8,641 and 8,458 commands/s with full rows, 9,429 and
-- 9,159 lean. Lean rows through these overloads against lean rows built in
-- append_independent itself (its first form): 8,573 and 9,264 against 9,266 and
-- 8,756 commands/s, no difference beyond noise.
--
-- CREATE OR REPLACE drops a function's settings, so both are set again on every
-- array-path function below, overloads included.

CREATE FUNCTION __SCHEMA__.append_independent(
    p_commands int, p_expect_cmd int[], p_expect_streams text[], p_expect_versions bigint[],
    p_event_cmd int[], p_ids uuid[], p_event_streams text[], p_types text[],
    p_payloads bytea[], p_metadata bytea[], p_lean boolean)
RETURNS SETOF __SCHEMA__.append_outcome
LANGUAGE plpgsql
AS $fn$
DECLARE
    v_actual bigint[];
    v_bad int[];
    v_n int;
    v_base bigint;
    v_stray record;
    v_inserted bigint;
    v_written text[];
    v_added bigint[];
    v_out __SCHEMA__.append_outcome[];
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

    -- Each expected stream's version, in the order of the arrays: a scalar subquery
    -- is one index probe a row, whatever the planner thinks of the table's size.
    -- (A stream with no row is at version 0: a conflict for an expected later
    -- version. For an expected 0 the caller has made the row; NULL if it has not.)
    v_actual := ARRAY(SELECT coalesce((SELECT s.version FROM __SCHEMA__.streams s
                                        WHERE s.stream_id = x.sid),
                                      CASE WHEN x.expected <> 0 THEN 0 END)
                        FROM unnest(p_expect_streams, p_expect_versions) WITH ORDINALITY AS x(sid, expected, i)
                       ORDER BY x.i);
    IF array_position(v_actual, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'eventcore: append_batch: stream % has no row to lock',
                        quote_nullable(p_expect_streams[array_position(v_actual, NULL)]);
    END IF;

    v_bad := ARRAY(SELECT DISTINCT x.cmd
                     FROM unnest(p_expect_cmd, p_expect_versions, v_actual)
                          AS x(cmd, expected, actual)
                    WHERE x.actual <> x.expected);

    SELECT count(*) INTO v_n FROM unnest(p_event_cmd) AS c WHERE c <> ALL (v_bad);
    IF v_n > 0 THEN
        SELECT array_agg(c.sid), array_agg(c.n) INTO v_written, v_added
          FROM (SELECT u.sid, count(*) AS n
                  FROM unnest(p_event_cmd, p_event_streams) AS u(cmd, sid)
                 WHERE u.cmd <> ALL (v_bad)
                 GROUP BY u.sid) AS c;
        UPDATE __SCHEMA__.streams s SET version = s.version + w.n
          FROM unnest(v_written, v_added) AS w(sid, n)
         WHERE s.stream_id = ANY (v_written) AND s.stream_id = w.sid;
    END IF;

    -- The outcome rows, numbered relative to the batch's first position (not
    -- known yet): first_position holds the rank of a command's first event. Lean
    -- (the caller adds up the versions): a success's row carries no streams and
    -- versions, which are its expected versions plus its events per stream.
    IF p_lean THEN
        IF cardinality(v_bad) = 0 THEN
            v_out := ARRAY(
                SELECT ROW(c.cmd::int, f.first, NULL, NULL, NULL, NULL, NULL)::__SCHEMA__.append_outcome
                  FROM generate_series(1, p_commands) AS c(cmd)
                  LEFT JOIN (SELECT e.cmd, min(e.ord) AS first
                               FROM unnest(p_event_cmd) WITH ORDINALITY AS e(cmd, ord)
                              GROUP BY e.cmd) AS f ON f.cmd = c.cmd
                 ORDER BY c.cmd);
        ELSE
            v_out := ARRAY(
                WITH firsts AS (
                    SELECT e.cmd, min(e.rank) AS first
                      FROM (SELECT c.cmd, row_number() OVER (ORDER BY c.ord) AS rank
                              FROM unnest(p_event_cmd) WITH ORDINALITY AS c(cmd, ord)
                             WHERE c.cmd <> ALL (v_bad)) AS e
                     GROUP BY e.cmd
                ), conflicts AS (
                    SELECT DISTINCT ON (x.cmd) x.cmd, x.sid, x.expected, x.actual
                      FROM unnest(p_expect_cmd, p_expect_streams, p_expect_versions, v_actual)
                           AS x(cmd, sid, expected, actual)
                     WHERE x.actual <> x.expected
                     ORDER BY x.cmd, x.sid
                )
                SELECT ROW(c.cmd::int, f.first, NULL, NULL, b.sid, b.expected, b.actual)
                       ::__SCHEMA__.append_outcome
                  FROM generate_series(1, p_commands) AS c(cmd)
                  LEFT JOIN conflicts b ON b.cmd = c.cmd
                  LEFT JOIN firsts f ON f.cmd = c.cmd AND b.cmd IS NULL
                 ORDER BY c.cmd);
        END IF;
    ELSE
        v_out := ARRAY(
        WITH expects AS (
            SELECT x.cmd, x.sid, x.expected, x.actual, x.i
              FROM unnest(p_expect_cmd, p_expect_streams, p_expect_versions, v_actual)
                   WITH ORDINALITY AS x(cmd, sid, expected, actual, i)
        ), firsts AS (
            SELECT e.cmd, min(e.rank) AS first_position
              FROM (SELECT c.cmd, row_number() OVER (ORDER BY c.ord) AS rank
                      FROM unnest(p_event_cmd) WITH ORDINALITY AS c(cmd, ord)
                     WHERE c.cmd <> ALL (v_bad)) AS e
             GROUP BY e.cmd
        ), versions AS (
            SELECT x.cmd, array_agg(x.sid ORDER BY x.i) AS streams,
                   array_agg(x.actual + coalesce(w.n, 0) ORDER BY x.i) AS versions
              FROM expects x
              LEFT JOIN unnest(v_written, v_added) AS w(sid, n) ON w.sid = x.sid
             GROUP BY x.cmd
        ), conflicts AS (
            SELECT DISTINCT ON (x.cmd) x.cmd, x.sid, x.expected, x.actual
              FROM expects x
             WHERE x.actual <> x.expected
             ORDER BY x.cmd, x.sid
        )
        SELECT ROW(c.cmd::int, f.first_position, v.streams, v.versions, b.sid, b.expected, b.actual)::__SCHEMA__.append_outcome
          FROM generate_series(1, p_commands) AS c(cmd)
          LEFT JOIN conflicts b ON b.cmd = c.cmd
          LEFT JOIN firsts f ON f.cmd = c.cmd AND b.cmd IS NULL
          LEFT JOIN versions v ON v.cmd = c.cmd AND b.cmd IS NULL
         ORDER BY c.cmd);
    END IF;

    IF v_n > 0 THEN
        -- The position counter last: its row stays locked until the commit.
        UPDATE __SCHEMA__.log_head SET position = position + v_n WHERE id = 1
        RETURNING position - v_n INTO v_base;
        INSERT INTO __SCHEMA__.events
               (position, event_id, stream_id, stream_version, event_type, payload, metadata)
        SELECT v_base + row_number() OVER (ORDER BY u.ord), u.eid, u.sid,
               x.actual + row_number() OVER (PARTITION BY u.sid ORDER BY u.ord),
               u.typ, u.pl, u.md
          FROM unnest(p_event_cmd, p_ids, p_event_streams, p_types, p_payloads, p_metadata)
               WITH ORDINALITY AS u(cmd, eid, sid, typ, pl, md, ord)
          JOIN unnest(p_expect_streams, v_actual) AS x(sid, actual) ON x.sid = u.sid
         WHERE u.cmd <> ALL (v_bad);
        GET DIAGNOSTICS v_inserted = ROW_COUNT;
        IF v_inserted <> v_n THEN
            RAISE EXCEPTION 'eventcore: append_batch: inserted % of the % event(s) to write; '
                            'refusing to number the others', v_inserted, v_n;
        END IF;
        PERFORM pg_notify('__CHANNEL__', (v_base + v_n)::text);
    END IF;
    RETURN QUERY SELECT o.command, v_base + o.first_position, o.out_streams, o.out_versions,
                        o.conflict_stream, o.conflict_expected, o.conflict_actual
                   FROM unnest(v_out) AS o;
END
$fn$;

CREATE OR REPLACE FUNCTION __SCHEMA__.append_independent(
    p_commands int, p_expect_cmd int[], p_expect_streams text[], p_expect_versions bigint[],
    p_event_cmd int[], p_ids uuid[], p_event_streams text[], p_types text[],
    p_payloads bytea[], p_metadata bytea[])
RETURNS SETOF __SCHEMA__.append_outcome
LANGUAGE plpgsql
AS $fn$
BEGIN
    RETURN QUERY SELECT * FROM __SCHEMA__.append_independent(
        p_commands, p_expect_cmd, p_expect_streams, p_expect_versions, p_event_cmd, p_ids,
        p_event_streams, p_types, p_payloads, p_metadata, false);
END
$fn$;

CREATE FUNCTION __SCHEMA__.append_run(
    p_first int, p_last int,
    p_expect_end int[], p_expect_cmd int[], p_expect_streams text[], p_expect_versions bigint[],
    p_event_end int[], p_event_cmd int[], p_event_ids uuid[], p_event_streams text[],
    p_event_types text[], p_payloads bytea[], p_metadata bytea[], p_lean boolean)
RETURNS SETOF __SCHEMA__.append_outcome
LANGUAGE plpgsql
AS $fn$
DECLARE
    v_e0 int := coalesce(p_expect_end[p_first - 1], 0);
    v_e1 int := p_expect_end[p_last];
    v_v0 int := coalesce(p_event_end[p_first - 1], 0);
    v_v1 int := p_event_end[p_last];
    v_shift int := p_first - 1;
BEGIN
    IF p_first = p_last THEN
        RETURN QUERY SELECT * FROM __SCHEMA__.append_one(
            p_first,
            p_expect_streams[v_e0 + 1 : v_e1], p_expect_versions[v_e0 + 1 : v_e1],
            p_event_ids[v_v0 + 1 : v_v1], p_event_streams[v_v0 + 1 : v_v1],
            p_event_types[v_v0 + 1 : v_v1], p_payloads[v_v0 + 1 : v_v1],
            p_metadata[v_v0 + 1 : v_v1]);
        RETURN;
    END IF;
    RETURN QUERY
    SELECT o.command + v_shift, o.first_position, o.out_streams, o.out_versions,
           o.conflict_stream, o.conflict_expected, o.conflict_actual
      FROM __SCHEMA__.append_independent(
               p_last - v_shift,
               ARRAY(SELECT c.cmd - v_shift
                       FROM unnest(p_expect_cmd[v_e0 + 1 : v_e1]) WITH ORDINALITY AS c(cmd, i)
                      ORDER BY c.i),
               p_expect_streams[v_e0 + 1 : v_e1], p_expect_versions[v_e0 + 1 : v_e1],
               ARRAY(SELECT c.cmd - v_shift
                       FROM unnest(p_event_cmd[v_v0 + 1 : v_v1]) WITH ORDINALITY AS c(cmd, i)
                      ORDER BY c.i),
               p_event_ids[v_v0 + 1 : v_v1], p_event_streams[v_v0 + 1 : v_v1],
               p_event_types[v_v0 + 1 : v_v1], p_payloads[v_v0 + 1 : v_v1],
               p_metadata[v_v0 + 1 : v_v1], p_lean) AS o
     ORDER BY o.command;
END
$fn$;

CREATE OR REPLACE FUNCTION __SCHEMA__.append_run(
    p_first int, p_last int,
    p_expect_end int[], p_expect_cmd int[], p_expect_streams text[], p_expect_versions bigint[],
    p_event_end int[], p_event_cmd int[], p_event_ids uuid[], p_event_streams text[],
    p_event_types text[], p_payloads bytea[], p_metadata bytea[])
RETURNS SETOF __SCHEMA__.append_outcome
LANGUAGE plpgsql
AS $fn$
BEGIN
    RETURN QUERY SELECT * FROM __SCHEMA__.append_run(
        p_first, p_last, p_expect_end, p_expect_cmd, p_expect_streams, p_expect_versions,
        p_event_end, p_event_cmd, p_event_ids, p_event_streams, p_event_types, p_payloads,
        p_metadata, false);
END
$fn$;

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
    p_metadata        bytea[],
    p_lean            boolean)
RETURNS SETOF __SCHEMA__.append_outcome
LANGUAGE plpgsql
AS $fn$
DECLARE
    v_commands int := coalesce(cardinality(p_expect_end), 0);
    v_expects int := coalesce(cardinality(p_expect_streams), 0);
    v_events int := coalesce(cardinality(p_event_ids), 0);
    v_e0 int := 0;
    v_run_first int := 1;
    v_run_streams text[] := '{}';
    v_streams text[];
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

    -- 1. every stream expected empty gets a row to lock (version 0 = empty stream)
    IF 0 = ANY (p_expect_versions) THEN
        INSERT INTO __SCHEMA__.streams (stream_id, version)
        SELECT DISTINCT x.sid, 0
          FROM unnest(p_expect_streams, p_expect_versions) AS x(sid, expected)
         WHERE x.expected = 0
         ORDER BY 1
        ON CONFLICT DO NOTHING;
    END IF;

    -- 2. lock them all, in stream_id order
    PERFORM 1 FROM __SCHEMA__.streams
     WHERE stream_id = ANY (p_expect_streams)
     ORDER BY stream_id
       FOR UPDATE;

    -- 3. commands that share no stream are independent: all at once, set-based
    --    (one statement tells, where cutting the batch into runs below costs a
    --    loop turn per command). (Within one command streams are distinct.)
    IF v_commands > 1
       AND (SELECT count(*) = count(DISTINCT s) FROM unnest(p_expect_streams) AS s) THEN
        RETURN QUERY SELECT * FROM __SCHEMA__.append_independent(
            v_commands, p_expect_cmd, p_expect_streams, p_expect_versions, p_event_cmd,
            p_event_ids, p_event_streams, p_event_types, p_payloads, p_metadata, p_lean);
        RETURN;
    END IF;

    -- 4. otherwise the runs of commands that share no stream, one after another
    --    (&& is array overlap).
    FOR i IN 1 .. v_commands LOOP
        v_streams := p_expect_streams[v_e0 + 1 : p_expect_end[i]];
        IF v_run_streams && v_streams THEN
            RETURN QUERY SELECT * FROM __SCHEMA__.append_run(
                v_run_first, i - 1, p_expect_end, p_expect_cmd, p_expect_streams,
                p_expect_versions, p_event_end, p_event_cmd, p_event_ids, p_event_streams,
                p_event_types, p_payloads, p_metadata, p_lean);
            v_run_first := i;
            v_run_streams := v_streams;
        ELSE
            v_run_streams := v_run_streams || v_streams;
        END IF;
        v_e0 := p_expect_end[i];
    END LOOP;
    IF v_commands > 0 THEN
        RETURN QUERY SELECT * FROM __SCHEMA__.append_run(
            v_run_first, v_commands, p_expect_end, p_expect_cmd, p_expect_streams,
            p_expect_versions, p_event_end, p_event_cmd, p_event_ids, p_event_streams,
            p_event_types, p_payloads, p_metadata, p_lean);
    END IF;
END
$fn$;

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
BEGIN
    RETURN QUERY SELECT * FROM __SCHEMA__.append_batch(
        p_expect_end, p_expect_cmd, p_expect_streams, p_expect_versions, p_event_end,
        p_event_cmd, p_event_ids, p_event_streams, p_event_types, p_payloads, p_metadata,
        false);
END
$fn$;

CREATE OR REPLACE FUNCTION __SCHEMA__.append_one(
    p_command int, p_streams text[], p_versions bigint[], p_ids uuid[],
    p_event_streams text[], p_types text[], p_payloads bytea[], p_metadata bytea[])
RETURNS SETOF __SCHEMA__.append_outcome
LANGUAGE plpgsql
AS $fn$
DECLARE
    v_n int := coalesce(cardinality(p_ids), 0);
    v_first bigint;
    v_actual bigint[];
    v_bad record;
    v_stray text;
    v_inserted bigint;
    v_written text[];
    v_added bigint[];
    v_versions bigint[];
BEGIN
    SELECT u.sid INTO v_stray
      FROM unnest(p_event_streams) AS u(sid)
     WHERE NOT coalesce(u.sid = ANY (p_streams), false)
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'eventcore: append_batch: an event of command % is for stream %, '
                        'which is not among its expected streams', p_command, quote_nullable(v_stray);
    END IF;

    -- (A stream with no row is at version 0: a conflict for an expected later
    -- version. For an expected 0 the caller has made the row; NULL if it has not.)
    v_actual := ARRAY(SELECT coalesce((SELECT s.version FROM __SCHEMA__.streams s
                                        WHERE s.stream_id = x.sid),
                                      CASE WHEN x.expected <> 0 THEN 0 END)
                        FROM unnest(p_streams, p_versions) WITH ORDINALITY AS x(sid, expected, i)
                       ORDER BY x.i);
    IF array_position(v_actual, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'eventcore: append_batch: stream % has no row to lock',
                        quote_nullable(p_streams[array_position(v_actual, NULL)]);
    END IF;

    SELECT x.sid, x.expected, x.actual INTO v_bad
      FROM unnest(p_streams, p_versions, v_actual) AS x(sid, expected, actual)
     WHERE x.actual <> x.expected
     ORDER BY x.sid
     LIMIT 1;
    IF FOUND THEN
        RETURN QUERY SELECT p_command, NULL::bigint, NULL::text[], NULL::bigint[],
                            v_bad.sid, v_bad.expected, v_bad.actual;
        RETURN;
    END IF;
    IF v_n > 0 THEN
        SELECT array_agg(c.sid), array_agg(c.n) INTO v_written, v_added
          FROM (SELECT u.sid, count(*) AS n FROM unnest(p_event_streams) AS u(sid)
                 GROUP BY u.sid) AS c;
        UPDATE __SCHEMA__.streams s SET version = s.version + w.n
          FROM unnest(v_written, v_added) AS w(sid, n)
         WHERE s.stream_id = ANY (v_written) AND s.stream_id = w.sid;
    END IF;
    v_versions := ARRAY(SELECT x.actual + coalesce(w.n, 0)
                          FROM unnest(p_streams, v_actual) WITH ORDINALITY AS x(sid, actual, i)
                          LEFT JOIN unnest(v_written, v_added) AS w(sid, n) ON w.sid = x.sid
                         ORDER BY x.i);

    IF v_n > 0 THEN
        -- The position counter last: its row stays locked until the commit.
        UPDATE __SCHEMA__.log_head SET position = position + v_n WHERE id = 1
        RETURNING position - v_n + 1 INTO v_first;

        INSERT INTO __SCHEMA__.events
               (position, event_id, stream_id, stream_version, event_type, payload, metadata)
        SELECT v_first + u.ord - 1, u.eid, u.sid,
               x.actual + row_number() OVER (PARTITION BY u.sid ORDER BY u.ord),
               u.typ, u.pl, u.md
          FROM unnest(p_ids, p_event_streams, p_types, p_payloads, p_metadata)
               WITH ORDINALITY AS u(eid, sid, typ, pl, md, ord)
          JOIN unnest(p_streams, v_actual) AS x(sid, actual) ON x.sid = u.sid;
        GET DIAGNOSTICS v_inserted = ROW_COUNT;
        IF v_inserted <> v_n THEN
            RAISE EXCEPTION 'eventcore: append_batch: inserted % of the % event(s) of command %; '
                            'refusing to number the others', v_inserted, v_n, p_command;
        END IF;
        -- Wake tailing readers; delivered only when (and if) the transaction commits.
        PERFORM pg_notify('__CHANNEL__', (v_first + v_n - 1)::text);
    END IF;
    RETURN QUERY
    SELECT p_command, v_first, p_streams, v_versions, NULL::text, NULL::bigint, NULL::bigint;
END
$fn$;

DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN
        SELECT p.oid::regprocedure
          FROM pg_proc p
         WHERE p.pronamespace = '__SCHEMA__'::regnamespace
           AND p.proname IN ('append_batch', 'append_to_stream', 'append_one',
                             'append_independent', 'append_run', 'check_slices')
    LOOP
        EXECUTE format('ALTER FUNCTION %s SET plan_cache_mode = force_generic_plan', f);
    END LOOP;
    FOR f IN
        SELECT p.oid::regprocedure
          FROM pg_proc p
         WHERE p.pronamespace = '__SCHEMA__'::regnamespace
           AND p.proname IN ('append_batch', 'append_to_stream', 'append_one',
                             'append_independent')
    LOOP
        EXECUTE format('ALTER FUNCTION %s SET enable_seqscan = off', f);
    END LOOP;
END
$$;
