-- append_to_stream: the append of one command that expects one stream and writes
-- only to it (the common case: a command on one aggregate), in five SQL
-- statements where append_batch needs twelve, in three nested function calls.
-- append_batch spends about 1 ms on such a call: two slice checks, a stray-event
-- check, the stream row's insert, its lock, a separate version check, and the
-- loop into append_one, each statement with PL/pgSQL's own cost. Here the version check, the lock and the new version are
-- one UPDATE.
--
-- Locks: the stream's row, then the position counter, the order append_batch
-- takes them in, so the two functions cannot deadlock with each other.
--
-- The UPDATE runs in READ COMMITTED (the store's transactions): when another
-- transaction holds the row, it waits for it and then re-checks the version on the
-- newest row, so a writer that got there first is seen. It matches no row when the
-- version moved, or when the stream has no row yet. Then:
--   * an expected version of 0 inserts the row (a new stream), or finds that a
--     concurrent transaction just inserted it (ON CONFLICT waits for that one);
--   * otherwise the current version is read: different from the expected one, it
--     is the conflict returned; equal (it moved up to the expected version after
--     the UPDATE's snapshot), the UPDATE is tried again. Versions only grow, so
--     this repeats at most until the stream passes the expected version.
-- The row it returns has append_batch's shape, with command number 1.

CREATE FUNCTION __SCHEMA__.append_to_stream(
    p_stream text, p_version bigint, p_ids uuid[], p_types text[],
    p_payloads bytea[], p_metadata bytea[])
RETURNS SETOF __SCHEMA__.append_outcome
LANGUAGE plpgsql
AS $fn$
DECLARE
    v_n int := coalesce(cardinality(p_ids), 0);
    v_version bigint;
    v_actual bigint;
    v_first bigint;
BEGIN
    IF p_stream IS NULL OR p_version IS NULL
       OR coalesce(cardinality(p_types), 0) <> v_n
       OR coalesce(cardinality(p_payloads), 0) <> v_n
       OR coalesce(cardinality(p_metadata), 0) <> v_n THEN
        RAISE EXCEPTION 'eventcore: append_to_stream: stream %, version %: the event arrays '
                        'differ in length, or a value is missing', quote_nullable(p_stream), p_version;
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
        INSERT INTO __SCHEMA__.events
               (position, event_id, stream_id, stream_version, event_type, payload, metadata)
        SELECT v_first + u.ord - 1, u.eid, p_stream, p_version + u.ord, u.typ, u.pl, u.md
          FROM unnest(p_ids, p_types, p_payloads, p_metadata)
               WITH ORDINALITY AS u(eid, typ, pl, md, ord);
        -- Wake tailing readers; delivered only when (and if) the transaction commits.
        PERFORM pg_notify('__CHANNEL__', (v_first + v_n - 1)::text);
    END IF;
    RETURN QUERY SELECT 1, v_first, ARRAY[p_stream], ARRAY[v_version],
                        NULL::text, NULL::bigint, NULL::bigint;
END
$fn$;
