-- append_to_stream takes an event type and metadata shared by every event of the
-- append as an array of one element instead of one copy per event. A big batch
-- mostly writes one type, and a command's events always share their metadata;
-- each array element costs the client about 0.2 µs to encode (asyncpg checks
-- every str or bytes element against two abstract base classes), a quarter of
-- what a 1,000-event append cost the client (docs/benchmarks.md). An array of
-- the events' length works as before; the two may be mixed.
--
-- The body is 0008's otherwise; CREATE OR REPLACE drops the settings 0011 and
-- 0012 gave the function, so they are given again below.

CREATE OR REPLACE FUNCTION __SCHEMA__.append_to_stream(
    p_stream text, p_version bigint, p_ids uuid[], p_types text[],
    p_payloads bytea[], p_metadata bytea[])
RETURNS SETOF __SCHEMA__.append_outcome
LANGUAGE plpgsql
AS $fn$
DECLARE
    v_n int := coalesce(cardinality(p_ids), 0);
    -- The value every event shares, or NULL when each has its own.
    v_type text := CASE WHEN v_n > 1 AND cardinality(p_types) = 1
                        THEN (SELECT t FROM unnest(p_types) AS t) END;
    v_metadata bytea := CASE WHEN v_n > 1 AND cardinality(p_metadata) = 1
                             THEN (SELECT m FROM unnest(p_metadata) AS m) END;
    v_version bigint;
    v_actual bigint;
    v_first bigint;
BEGIN
    IF p_stream IS NULL OR p_version IS NULL
       OR coalesce(cardinality(p_payloads), 0) <> v_n
       OR NOT (coalesce(cardinality(p_types), 0) = v_n
               OR (v_n > 1 AND cardinality(p_types) = 1))
       OR NOT (coalesce(cardinality(p_metadata), 0) = v_n
               OR (v_n > 1 AND cardinality(p_metadata) = 1)) THEN
        RAISE EXCEPTION 'eventcore: append_to_stream: stream %, version %: the event arrays '
                        'differ in length (types and metadata may hold one value for every '
                        'event), or a value is missing', quote_nullable(p_stream), p_version;
    END IF;
    LOOP
        UPDATE __SCHEMA__.streams SET version = version + v_n
         WHERE stream_id = p_stream AND version = p_version
        RETURNING version INTO v_version;
        EXIT WHEN FOUND;
        IF p_version = 0 THEN
            INSERT INTO __SCHEMA__.streams (stream_id, version) VALUES (p_stream, v_n)
            ON CONFLICT DO NOTHING
            RETURNING version INTO v_version;
            EXIT WHEN FOUND;
        END IF;
        SELECT s.version INTO v_actual FROM __SCHEMA__.streams s WHERE s.stream_id = p_stream;
        v_actual := coalesce(v_actual, 0);
        IF v_actual <> p_version THEN
            RETURN QUERY SELECT 1, NULL::bigint, NULL::text[], NULL::bigint[],
                                p_stream, p_version, v_actual;
            RETURN;
        END IF;
    END LOOP;
    IF v_n > 0 THEN
        UPDATE __SCHEMA__.log_head SET position = position + v_n WHERE id = 1
        RETURNING position - v_n + 1 INTO v_first;
        -- A shorter array pads unnest's rows with NULLs; the shared value fills them.
        -- Each event's own NULL stays NULL (v_type and v_metadata are NULL then),
        -- and the NOT NULL columns refuse it.
        INSERT INTO __SCHEMA__.events
               (position, event_id, stream_id, stream_version, event_type, payload, metadata)
        SELECT v_first + u.ord - 1, u.eid, p_stream, p_version + u.ord,
               coalesce(v_type, u.typ), u.pl, coalesce(v_metadata, u.md)
          FROM unnest(p_ids, p_types, p_payloads, p_metadata)
               WITH ORDINALITY AS u(eid, typ, pl, md, ord);
        -- Wake tailing readers; delivered only when (and if) the transaction commits.
        PERFORM pg_notify('__CHANNEL__', (v_first + v_n - 1)::text);
    END IF;
    RETURN QUERY SELECT 1, v_first, ARRAY[p_stream], ARRAY[v_version],
                        NULL::text, NULL::bigint, NULL::bigint;
END
$fn$;

ALTER FUNCTION __SCHEMA__.append_to_stream(text, bigint, uuid[], text[], bytea[], bytea[])
    SET enable_seqscan = off;
ALTER FUNCTION __SCHEMA__.append_to_stream(text, bigint, uuid[], text[], bytea[], bytea[])
    SET plan_cache_mode = force_generic_plan;
