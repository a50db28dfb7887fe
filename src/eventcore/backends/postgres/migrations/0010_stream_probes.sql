-- The append functions read each expected stream's version once, by one index
-- probe per stream, and work from those versions; they never join a batch's
-- arrays (or its staged rows) against streams. With the joins they replace (0003,
-- 0006, 0007) the plan decided the cost: planned for a batch's real size (a
-- connection's first five calls, before PL/pgSQL settles on a generic plan, and
-- some sessions throughout) the planner estimated 32 index probes dearer than a
-- sequential scan and a hash of a 6,000-stream table, and scanned it four times a
-- call, a cost that grows with the store rather than with the batch.
--
-- The caller (append_batch, append_staged) has locked the expected streams' rows
-- that exist, so the versions read cannot change before the transaction ends. It
-- has made a row for every stream expected at version 0 (one missing is its bug,
-- refused); a stream expected at a later version without a row is at version 0,
-- a conflict. The new versions are those read plus the events each stream gets,
-- written by a statement that finds the rows by stream id (= ANY) rather than by
-- a join. Everything else (the checks, the outcome rows, the positions, the
-- notification) is as before; an outcome's streams now come in the order the
-- command expects them.

CREATE OR REPLACE FUNCTION __SCHEMA__.append_independent(
    p_commands int, p_expect_cmd int[], p_expect_streams text[], p_expect_versions bigint[],
    p_event_cmd int[], p_ids uuid[], p_event_streams text[], p_types text[],
    p_payloads bytea[], p_metadata bytea[])
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
        UPDATE __SCHEMA__.log_head SET position = position + v_n WHERE id = 1
        RETURNING position - v_n INTO v_base;

        -- No two commands of the batch share a stream, so a stream id names one
        -- expectation (and its version) here.
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

        SELECT array_agg(c.sid), array_agg(c.n) INTO v_written, v_added
          FROM (SELECT u.sid, count(*) AS n
                  FROM unnest(p_event_cmd, p_event_streams) AS u(cmd, sid)
                 WHERE u.cmd <> ALL (v_bad)
                 GROUP BY u.sid) AS c;
        UPDATE __SCHEMA__.streams s SET version = s.version + w.n
          FROM unnest(v_written, v_added) AS w(sid, n)
         WHERE s.stream_id = ANY (v_written) AND s.stream_id = w.sid;
        PERFORM pg_notify('__CHANNEL__', (v_base + v_n)::text);
    END IF;

    RETURN QUERY
    WITH expects AS (
        SELECT x.cmd, x.sid, x.expected, x.actual, x.i
          FROM unnest(p_expect_cmd, p_expect_streams, p_expect_versions, v_actual)
               WITH ORDINALITY AS x(cmd, sid, expected, actual, i)
    ), firsts AS (
        SELECT e.cmd, v_base + min(e.rank) AS first_position
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
    SELECT c.cmd::int, f.first_position, v.streams, v.versions, b.sid, b.expected, b.actual
      FROM generate_series(1, p_commands) AS c(cmd)
      LEFT JOIN conflicts b ON b.cmd = c.cmd
      LEFT JOIN firsts f ON f.cmd = c.cmd AND b.cmd IS NULL
      LEFT JOIN versions v ON v.cmd = c.cmd AND b.cmd IS NULL
     ORDER BY c.cmd;
END
$fn$;

-- One command (any number of distinct streams), as in 0007, from probed versions.
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

        SELECT array_agg(c.sid), array_agg(c.n) INTO v_written, v_added
          FROM (SELECT u.sid, count(*) AS n FROM unnest(p_event_streams) AS u(sid)
                 GROUP BY u.sid) AS c;
        UPDATE __SCHEMA__.streams s SET version = s.version + w.n
          FROM unnest(v_written, v_added) AS w(sid, n)
         WHERE s.stream_id = ANY (v_written) AND s.stream_id = w.sid;
        -- Wake tailing readers; delivered only when (and if) the transaction commits.
        PERFORM pg_notify('__CHANNEL__', (v_first + v_n - 1)::text);
    END IF;
    RETURN QUERY
    SELECT p_command, v_first, p_streams,
           ARRAY(SELECT x.actual + coalesce(w.n, 0)
                   FROM unnest(p_streams, v_actual) WITH ORDINALITY AS x(sid, actual, i)
                   LEFT JOIN unnest(v_written, v_added) AS w(sid, n) ON w.sid = x.sid
                  ORDER BY x.i),
           NULL::text, NULL::bigint, NULL::bigint;
END
$fn$;

-- As append_independent above, with the events read from the staging table (0006).
CREATE OR REPLACE FUNCTION __SCHEMA__.append_independent_staged(
    p_commands int, p_expect_cmd int[], p_expect_streams text[], p_expect_versions bigint[])
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

    SELECT count(*) INTO v_n
      FROM pg_temp.eventcore_staged_events AS e
     WHERE e.cmd <> ALL (v_bad);
    IF v_n > 0 THEN
        UPDATE __SCHEMA__.log_head SET position = position + v_n WHERE id = 1
        RETURNING position - v_n INTO v_base;

        INSERT INTO __SCHEMA__.events
               (position, event_id, stream_id, stream_version, event_type, payload, metadata)
        SELECT v_base + row_number() OVER (ORDER BY u.ord), u.event_id, u.stream_id,
               x.actual + row_number() OVER (PARTITION BY u.stream_id ORDER BY u.ord),
               u.event_type, u.payload, u.metadata
          FROM pg_temp.eventcore_staged_events AS u
          JOIN unnest(p_expect_streams, v_actual) AS x(sid, actual) ON x.sid = u.stream_id
         WHERE u.cmd <> ALL (v_bad);
        GET DIAGNOSTICS v_inserted = ROW_COUNT;
        IF v_inserted <> v_n THEN
            RAISE EXCEPTION 'eventcore: append_batch: inserted % of the % event(s) to write; '
                            'refusing to number the others', v_inserted, v_n;
        END IF;

        SELECT array_agg(c.sid), array_agg(c.n) INTO v_written, v_added
          FROM (SELECT u.stream_id AS sid, count(*) AS n
                  FROM pg_temp.eventcore_staged_events AS u
                 WHERE u.cmd <> ALL (v_bad)
                 GROUP BY u.stream_id) AS c;
        UPDATE __SCHEMA__.streams s SET version = s.version + w.n
          FROM unnest(v_written, v_added) AS w(sid, n)
         WHERE s.stream_id = ANY (v_written) AND s.stream_id = w.sid;
        PERFORM pg_notify('__CHANNEL__', (v_base + v_n)::text);
    END IF;

    RETURN QUERY
    WITH expects AS (
        SELECT x.cmd, x.sid, x.expected, x.actual, x.i
          FROM unnest(p_expect_cmd, p_expect_streams, p_expect_versions, v_actual)
               WITH ORDINALITY AS x(cmd, sid, expected, actual, i)
    ), firsts AS (
        SELECT e.cmd, v_base + min(e.rank) AS first_position
          FROM (SELECT u.cmd, row_number() OVER (ORDER BY u.ord) AS rank
                  FROM pg_temp.eventcore_staged_events AS u
                 WHERE u.cmd <> ALL (v_bad)) AS e
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
    SELECT c.cmd::int, f.first_position, v.streams, v.versions, b.sid, b.expected, b.actual
      FROM generate_series(1, p_commands) AS c(cmd)
      LEFT JOIN conflicts b ON b.cmd = c.cmd
      LEFT JOIN firsts f ON f.cmd = c.cmd AND b.cmd IS NULL
      LEFT JOIN versions v ON v.cmd = c.cmd AND b.cmd IS NULL
     ORDER BY c.cmd;
END
$fn$;

-- append_batch and append_staged make a row only for the streams a command
-- expects at version 0, where they made one for every expected stream: in a store
-- that has run a while nearly every expected stream has its row already, and
-- looking each one up for an INSERT ... ON CONFLICT that does nothing was about a
-- tenth of the server's CPU for a batch of 64 one-stream appends (perf). A stream
-- expected at a later version but without a row is at version 0: the probes above
-- read it so, and its command gets the conflict, as before. Everything else is as
-- in 0009 (append_batch) and 0006 (append_staged).

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
            p_event_ids, p_event_streams, p_event_types, p_payloads, p_metadata);
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
                p_event_types, p_payloads, p_metadata);
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
            p_event_types, p_payloads, p_metadata);
    END IF;
END
$fn$;

CREATE OR REPLACE FUNCTION __SCHEMA__.append_staged(
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

    -- as append_batch: every stream expected empty gets a row; they are locked in
    -- stream_id order
    IF 0 = ANY (p_expect_versions) THEN
        INSERT INTO __SCHEMA__.streams (stream_id, version)
        SELECT DISTINCT x.sid, 0
          FROM unnest(p_expect_streams, p_expect_versions) AS x(sid, expected)
         WHERE x.expected = 0
         ORDER BY 1
        ON CONFLICT DO NOTHING;
    END IF;

    PERFORM 1 FROM __SCHEMA__.streams
     WHERE stream_id = ANY (p_expect_streams)
     ORDER BY stream_id
       FOR UPDATE;

    RETURN QUERY SELECT * FROM __SCHEMA__.append_independent_staged(
        v_commands, p_expect_cmd, p_expect_streams, p_expect_versions);
END
$fn$;
