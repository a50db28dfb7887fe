-- append_batch takes the set-based path for every run of consecutive commands
-- that share no stream, not only when the whole batch shares none. Before, one
-- pair of commands on a common stream anywhere in a batch sent all of its
-- commands through append_one, one after another: a call for 32 two-stream
-- commands took 12.0-12.3 ms that way against 4.5-4.9 ms set-based
-- (benchmarks/append_functions.py --batch 32). Group commit at 64 tasks makes
-- such batches often: 64 random accounts of 10,000 share one about one batch
-- in five.
--
-- A batch whose commands share no stream at all is still one set-based call.
-- Otherwise the commands are cut into maximal runs, in order: a run ends before
-- the first command that expects a stream an earlier command of the run
-- expects. Within a run no command can see another's effects, so checking and
-- writing them all at once (append_independent) gives what one after another
-- would; the runs go one after another, each seeing the versions and positions
-- the runs before it left. A run of one command goes through append_one.
-- Everything else (checks, stream rows, the lock order) is as in 0003.

-- Commands p_first .. p_last of a batch (a run: no two share a stream), as
-- append_independent numbers them 1 .. n, renumbered back.
CREATE FUNCTION __SCHEMA__.append_run(
    p_first int, p_last int,
    p_expect_end int[], p_expect_cmd int[], p_expect_streams text[], p_expect_versions bigint[],
    p_event_end int[], p_event_cmd int[], p_event_ids uuid[], p_event_streams text[],
    p_event_types text[], p_payloads bytea[], p_metadata bytea[])
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
               p_metadata[v_v0 + 1 : v_v1]) AS o
     ORDER BY o.command;
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

    -- 1. every participating stream gets a row to lock (version 0 = empty stream)
    INSERT INTO __SCHEMA__.streams (stream_id, version)
    SELECT DISTINCT s, 0 FROM unnest(p_expect_streams) AS s ORDER BY 1
    ON CONFLICT DO NOTHING;

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
