-- The append functions read each expected stream's version once, by one index
-- probe per stream, and work from those versions; they never join a batch's
-- arrays (or its staged rows) against streams. The joins they replace (0003,
-- 0006, 0007) let the planner scan the whole streams table: for 32 commands on a
-- table of 6,300 streams it estimated 32 index probes dearer than a sequential
-- scan and a hash, and chose the scan, twice a call (the version check and the
-- versions it returns); one command on 40 streams, or any batch that came by COPY,
-- got the same. So a group-commit batch read the whole table, a cost that grew
-- with the number of streams in the store, not with the batch.
--
-- The caller (append_batch, append_staged) has created and locked every expected
-- stream's row, so the versions read cannot change before the transaction ends;
-- a missing row is the caller's bug and is refused. The new versions are those
-- plus the events each stream gets, written by a statement that finds the rows by
-- stream id (= ANY, an index scan) rather than by a join. Everything else (the
-- checks, the outcome rows, the positions, the notification) is as before; an
-- outcome's streams now come in the order the command expects them.

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
    v_actual := ARRAY(SELECT (SELECT s.version FROM __SCHEMA__.streams s
                               WHERE s.stream_id = x.sid)
                        FROM unnest(p_expect_streams) WITH ORDINALITY AS x(sid, i)
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

    v_actual := ARRAY(SELECT (SELECT s.version FROM __SCHEMA__.streams s
                               WHERE s.stream_id = x.sid)
                        FROM unnest(p_streams) WITH ORDINALITY AS x(sid, i)
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

    v_actual := ARRAY(SELECT (SELECT s.version FROM __SCHEMA__.streams s
                               WHERE s.stream_id = x.sid)
                        FROM unnest(p_expect_streams) WITH ORDINALITY AS x(sid, i)
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
