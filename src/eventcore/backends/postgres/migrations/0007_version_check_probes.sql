-- append_one's version check, rewritten so that its cost does not grow with the
-- number of streams. The join it replaces (0003) ended in ORDER BY stream_id
-- LIMIT 1, and with an array parameter of unknown length the planner's generic
-- plan for it could be a merge join along streams_pkey: it walks the index from
-- the first stream id to the command's greatest, so an append to a stream near
-- the end of 10,000 streams read ~10,000 index entries (about 1.8 ms) instead of
-- one. A session gets that generic plan once its first appends were big commands
-- (opening many streams at once), and keeps it. Everything else is as in 0003.

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

    -- One index probe per expected stream (a scalar subquery), never a join: the
    -- planner may not choose a merge join along streams_pkey, which stops only
    -- past the command's greatest stream id. Fenced by OFFSET 0 so the probes are
    -- not merged into the outer query, where the LIMIT would favour that join again.
    SELECT c.stream_id, c.expected, c.actual
      INTO v_bad
      FROM (SELECT x.stream_id, x.expected,
                   (SELECT s.version FROM __SCHEMA__.streams s
                     WHERE s.stream_id = x.stream_id) AS actual
              FROM unnest(p_streams, p_versions) AS x(stream_id, expected)
            OFFSET 0) AS c
     WHERE c.actual <> c.expected
     ORDER BY c.stream_id
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
