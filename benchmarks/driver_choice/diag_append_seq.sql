CREATE OR REPLACE FUNCTION pgproto.append_events_seq(
    p_expected_streams  text[],
    p_expected_versions bigint[],
    p_event_ids         uuid[],
    p_event_streams     text[],
    p_types             text[],
    p_payloads          jsonb[],
    p_metadata          jsonb[])
RETURNS TABLE (
    ok                boolean,
    first_position    bigint,
    n_events          int,
    out_streams       text[],
    out_versions      bigint[],
    conflict_stream   text,
    conflict_expected bigint,
    conflict_actual   bigint)
LANGUAGE plpgsql
AS $fn$
DECLARE
    v_n     int := coalesce(cardinality(p_event_ids), 0);
    v_first bigint;
    v_bad   record;
BEGIN
    IF cardinality(p_expected_streams) IS DISTINCT FROM cardinality(p_expected_versions)
       OR v_n <> coalesce(cardinality(p_event_streams), 0)
       OR v_n <> coalesce(cardinality(p_types), 0)
       OR v_n <> coalesce(cardinality(p_payloads), 0)
       OR v_n <> coalesce(cardinality(p_metadata), 0) THEN
        RAISE EXCEPTION 'append_events: argument arrays differ in length';
    END IF;
    -- programming error (the executor validates this before calling): every event
    -- must target a participating stream.
    IF EXISTS (SELECT 1 FROM unnest(p_event_streams) s
               WHERE s <> ALL (p_expected_streams)) THEN
        RAISE EXCEPTION 'append_events: event targets a stream that is not a participant';
    END IF;

    -- 1. make sure every participating stream has a row to lock (version 0 = empty).
    --    Sorted so two transactions creating the same new streams cannot deadlock.
    INSERT INTO pgproto.streams AS s (stream_id, version)
    SELECT DISTINCT e, 0 FROM unnest(p_expected_streams) e ORDER BY 1
    ON CONFLICT DO NOTHING;

    -- 2. lock participants in sorted order and compare every expected version
    --    (duplicate stream with two different expectations is a conflict too).
    SELECT l.stream_id, x.expected, l.version AS actual
      INTO v_bad
      FROM (SELECT s.stream_id, s.version
              FROM pgproto.streams s
             WHERE s.stream_id = ANY (p_expected_streams)
             ORDER BY s.stream_id
               FOR UPDATE) l
      JOIN unnest(p_expected_streams, p_expected_versions) AS x(stream_id, expected)
        ON x.stream_id = l.stream_id
     WHERE x.expected <> l.version
     ORDER BY l.stream_id
     LIMIT 1;
    IF FOUND THEN
        RETURN QUERY SELECT false, NULL::bigint, 0, NULL::text[], NULL::bigint[],
                            v_bad.stream_id, v_bad.expected, v_bad.actual;
        RETURN;
    END IF;

    IF v_n > 0 THEN
        -- 3. take the global position counter (row lock held to commit).
        -- (log_head lock removed)

        -- 4. insert events; stream_version = current version + rank within the stream.
        INSERT INTO pgproto.events
               (position, event_id, stream_id, stream_version, event_type, payload, metadata)
        SELECT nextval('pgproto.diag_pos_seq'), u.eid, u.sid,
               s.version + row_number() OVER (PARTITION BY u.sid ORDER BY u.ord),
               u.typ, u.pl, u.md
          FROM unnest(p_event_ids, p_event_streams, p_types, p_payloads, p_metadata)
               WITH ORDINALITY AS u(eid, sid, typ, pl, md, ord)
          JOIN pgproto.streams s ON s.stream_id = u.sid;

        -- 5. bump stream versions.
        UPDATE pgproto.streams s SET version = s.version + c.n
          FROM (SELECT sid, count(*) AS n FROM unnest(p_event_streams) sid GROUP BY sid) c
         WHERE s.stream_id = c.sid;
    END IF;

    RETURN QUERY
    SELECT true, v_first, v_n,
           array_agg(s.stream_id ORDER BY s.stream_id),
           array_agg(s.version ORDER BY s.stream_id),
           NULL::text, NULL::bigint, NULL::bigint
      FROM pgproto.streams s
     WHERE s.stream_id = ANY (p_expected_streams);
END
$fn$;
