-- Single-statement variant of append_events (data-modifying CTEs, no plpgsql).
-- Same parameters ($1..$7) and same result row as pgproto.append_events__SFX__.
-- Differences from the plpgsql function (all inherent to "one statement, one snapshot"):
--  * rows created by this statement are invisible to its own later CTEs, so missing
--    streams are not pre-created and locked; instead they are INSERTed (no ON CONFLICT)
--    after the log_head lock. If another transaction created the same stream meanwhile,
--    the statement fails with unique_violation (23505) on streams_pkey or on
--    events(stream_id, stream_version): the client must map 23505 to a version conflict.
--  * existing streams are locked with FOR UPDATE in stream_id order (READ COMMITTED
--    re-reads the newest committed version of a locked row), then log_head is locked.
WITH exp AS (
    SELECT x.stream_id, x.expected
      FROM unnest($1::text[], $2::bigint[]) AS x(stream_id, expected)
),
locked AS MATERIALIZED (
    SELECT s.stream_id, s.version
      FROM pgproto.streams__SFX__ s
     WHERE s.stream_id = ANY ($1::text[])
     ORDER BY s.stream_id
       FOR UPDATE
),
chk AS MATERIALIZED (
    SELECT e.stream_id, e.expected, coalesce(l.version, 0) AS actual,
           (l.stream_id IS NULL) AS missing
      FROM exp e LEFT JOIN locked l ON l.stream_id = e.stream_id
),
bad AS MATERIALIZED (
    SELECT stream_id, expected, actual FROM chk WHERE expected <> actual
     ORDER BY stream_id LIMIT 1
),
cnt AS MATERIALIZED (
    SELECT sid, count(*) AS n FROM unnest($4::text[]) AS sid GROUP BY sid
),
part AS MATERIALIZED (   -- one row per participating stream (dedup of exp)
    SELECT DISTINCT c.stream_id, c.actual, c.missing, coalesce(k.n, 0) AS n
      FROM chk c LEFT JOIN cnt k ON k.sid = c.stream_id
),
head AS (
    UPDATE pgproto.log_head__SFX__ h
       SET position = h.position + cardinality($3::uuid[])
     WHERE h.id = 1
       AND cardinality($3::uuid[]) > 0
       AND NOT EXISTS (SELECT 1 FROM bad)
    RETURNING h.position - cardinality($3::uuid[]) + 1 AS first
),
ev AS (
    INSERT INTO pgproto.events__SFX__
           (position, event_id, stream_id, stream_version, event_type, payload, metadata)
    SELECT hd.first + u.ord - 1, u.eid, u.sid,
           p.actual + row_number() OVER (PARTITION BY u.sid ORDER BY u.ord),
           u.typ, u.pl, u.md
      FROM head hd
     CROSS JOIN unnest($3::uuid[], $4::text[], $5::text[], $6::__PT__[], $7::__PT__[])
           WITH ORDINALITY AS u(eid, sid, typ, pl, md, ord)
      JOIN part p ON p.stream_id = u.sid
    RETURNING 1
),
new_streams AS (
    INSERT INTO pgproto.streams__SFX__ (stream_id, version)
    SELECT p.stream_id, p.n FROM part p
     WHERE p.missing AND EXISTS (SELECT 1 FROM head)
     ORDER BY p.stream_id
    RETURNING 1
),
bumped AS (
    UPDATE pgproto.streams__SFX__ s
       SET version = p.actual + p.n
      FROM part p
     WHERE s.stream_id = p.stream_id AND NOT p.missing AND p.n > 0
       AND EXISTS (SELECT 1 FROM head)
    RETURNING 1
)
SELECT b.stream_id IS NULL AS ok,
       (SELECT first FROM head) AS first_position,
       CASE WHEN b.stream_id IS NULL THEN cardinality($3::uuid[]) ELSE 0 END AS n_events,
       CASE WHEN b.stream_id IS NULL
            THEN (SELECT array_agg(stream_id ORDER BY stream_id) FROM part) END AS out_streams,
       CASE WHEN b.stream_id IS NULL
            THEN (SELECT array_agg(actual + n ORDER BY stream_id) FROM part) END AS out_versions,
       b.stream_id AS conflict_stream, b.expected AS conflict_expected, b.actual AS conflict_actual
  FROM (SELECT 1) AS one
  LEFT JOIN bad b ON true
