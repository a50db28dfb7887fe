"""The SQL of the PostgreSQL store (its rows become records in ``_reads``).

Every statement is built once per store with the schema name (a validated
identifier, see PostgresConfig) and takes its values as bound parameters only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from eventcore._glob import literal_prefix, postgres_regex
from eventcore.store import LogFilter

_COLUMNS: Final = (
    "position, event_id, stream_id, stream_version, event_type, payload, metadata, recorded_at"
)


@dataclass(frozen=True, slots=True)
class Statements:
    """The store's statements, rendered for one schema."""

    schema: str
    append_batch: str
    append_to_stream: str
    append_streams: str
    append_disjoint: str
    append_staged: str
    read_stream: str
    read_streams: str
    read_stream_tail: str
    stream_version: str
    list_streams: str
    head_position: str
    save_checkpoint: str
    load_checkpoint: str
    acquire_lease: str
    release_lease: str
    lease_holder: str
    lease_fence: str
    current_versions: str
    stored_event_ids: str
    save_snapshot: str
    load_snapshot: str
    events_by_id: str
    delete_checkpoint: str
    checkpoint_names: str
    record_dead_letter: str
    dead_letters: str
    clear_dead_letters: str

    @classmethod
    def for_schema(cls, quoted_schema: str) -> Statements:
        s = quoted_schema
        return cls(
            schema=s,
            # lean: a success's row without its versions, which outcome_of adds up
            # (migrations/0012)
            append_batch=(
                f"SELECT * FROM {s}.append_batch($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11,"
                " true)"
            ),
            # one command on one stream, the common case (migrations/0008)
            append_to_stream=f"SELECT * FROM {s}.append_to_stream($1, $2, $3, $4, $5, $6)",
            # commands on one stream each, no two on the same (migrations/0013)
            append_streams=f"SELECT * FROM {s}.append_streams($1, $2, $3, $4, $5, $6, $7)",
            # commands on one or more streams each, no two sharing one (migrations/0014)
            append_disjoint=(f"SELECT * FROM {s}.append_disjoint($1, $2, $3, $4, $5, $6, $7, $8)"),
            # append_batch with the events staged by COPY (see _copy)
            append_staged=f"SELECT * FROM {s}.append_staged($1, $2, $3, $4, $5)",
            read_stream=(
                f"SELECT {_COLUMNS} FROM {s}.events WHERE stream_id = $1 "
                "AND stream_version >= $2 ORDER BY stream_version LIMIT $3"
            ),
            # The same index walked backwards from the stream's end; the caller
            # reverses the rows.
            read_stream_tail=(
                f"SELECT {_COLUMNS} FROM {s}.events WHERE stream_id = $1 "
                "ORDER BY stream_version DESC LIMIT $2"
            ),
            # One keyset-paged read per stream (the LATERAL subquery walks the
            # (stream_id, stream_version) index), all in one statement.
            read_streams=(
                f"SELECT e.*, w.n FROM unnest($1::text[], $2::bigint[]) WITH ORDINALITY "
                "AS w(stream_id, first_version, n) CROSS JOIN LATERAL ("
                f"SELECT {_COLUMNS} FROM {s}.events "
                "WHERE stream_id = w.stream_id AND stream_version >= w.first_version "
                "ORDER BY stream_version LIMIT $3) AS e "
                "ORDER BY w.n, e.stream_version"
            ),
            stream_version=f"SELECT version FROM {s}.streams WHERE stream_id = $1",
            # The streams table's primary key, walked in order from the prefix: in any
            # collation a string sorts at or after its prefixes. Streams created by an
            # append that wrote nothing to them (read-only participants) have version 0.
            list_streams=(
                f"SELECT stream_id, version FROM {s}.streams"
                " WHERE stream_id >= $1 AND stream_id > $2 AND starts_with(stream_id, $1)"
                " AND version > 0 ORDER BY stream_id LIMIT $3"
            ),
            head_position=f"SELECT position FROM {s}.log_head WHERE id = 1",
            save_checkpoint=(
                f"INSERT INTO {s}.checkpoints (name, position) VALUES ($1, $2) "
                "ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position, "
                "saved_at = now()"
            ),
            load_checkpoint=f"SELECT position FROM {s}.checkpoints WHERE name = $1",
            acquire_lease=(
                f"INSERT INTO {s}.leases AS l (name, holder, expires_at, fence) "
                "VALUES ($1, $2, clock_timestamp() + make_interval(secs => $3), 1) "
                "ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, "
                "expires_at = EXCLUDED.expires_at, "
                "fence = l.fence + CASE WHEN l.holder = EXCLUDED.holder THEN 0 ELSE 1 END "
                "WHERE l.holder = EXCLUDED.holder OR l.expires_at <= clock_timestamp() "
                "RETURNING fence"
            ),
            # The row stays, with no holder: its fence token must outlive it.
            release_lease=(
                f"UPDATE {s}.leases SET holder = '', expires_at = '-infinity' "
                "WHERE name = $1 AND holder = $2"
            ),
            # FOR SHARE: the lease cannot change hands until the transaction that
            # checked it ends, so a fence that holds here holds at its COMMIT.
            lease_fence=f"SELECT fence FROM {s}.leases WHERE name = $1 FOR SHARE",
            lease_holder=(
                f"SELECT holder FROM {s}.leases WHERE name = $1 AND expires_at > clock_timestamp()"
            ),
            current_versions=(
                f"SELECT stream_id, version FROM {s}.streams WHERE stream_id = ANY($1::text[])"
            ),
            stored_event_ids=f"SELECT event_id FROM {s}.events WHERE event_id = ANY($1::uuid[])",
            # Replaces the stored snapshot only if the new one was folded from at
            # least every event the old one was, and more (Snapshot.supersedes).
            save_snapshot=(
                f"INSERT INTO {s}.snapshots AS old (key, streams, versions, state) "
                "VALUES ($1, $2, $3, $4) ON CONFLICT (key) DO UPDATE SET "
                "streams = EXCLUDED.streams, versions = EXCLUDED.versions, "
                "state = EXCLUDED.state, taken_at = now() "
                "WHERE NOT EXISTS (SELECT 1 FROM unnest(old.streams, old.versions) AS o(s, v) "
                "LEFT JOIN unnest(EXCLUDED.streams, EXCLUDED.versions) AS n(s, v) "
                "ON n.s = o.s WHERE n.v IS NULL OR n.v < o.v) "
                "AND EXISTS (SELECT 1 FROM unnest(EXCLUDED.streams, EXCLUDED.versions) AS n(s, v) "
                "LEFT JOIN unnest(old.streams, old.versions) AS o(s, v) "
                "ON o.s = n.s WHERE o.v IS NULL OR n.v > o.v) "
                "RETURNING true"
            ),
            load_snapshot=f"SELECT key, streams, versions, state FROM {s}.snapshots WHERE key = $1",
            # Served by the UNIQUE index on event_id.
            events_by_id=(
                f"SELECT {_COLUMNS} FROM {s}.events WHERE event_id = ANY($1::uuid[]) "
                "ORDER BY position"
            ),
            delete_checkpoint=f"DELETE FROM {s}.checkpoints WHERE name = $1",
            checkpoint_names=f"SELECT name FROM {s}.checkpoints ORDER BY name",
            record_dead_letter=(
                f"INSERT INTO {s}.dead_letters (projection, position, event_id, stream_id, "
                "event_type, error, failed_at) VALUES ($1, $2, $3, $4, $5, $6, $7) "
                "ON CONFLICT (projection, position) DO UPDATE SET event_id = EXCLUDED.event_id, "
                "stream_id = EXCLUDED.stream_id, event_type = EXCLUDED.event_type, "
                "error = EXCLUDED.error, failed_at = EXCLUDED.failed_at"
            ),
            dead_letters=(
                "SELECT position, event_id, stream_id, event_type, error, failed_at "
                f"FROM {s}.dead_letters WHERE projection = $1 ORDER BY position"
            ),
            clear_dead_letters=f"DELETE FROM {s}.dead_letters WHERE projection = $1",
        )

    def read_log(
        self, after: int, limit: int | None, log_filter: LogFilter, stop: int | None = None
    ) -> tuple[str, list[Any]] | None:
        """SQL and parameters for the log after ``after`` (up to ``stop``,
        inclusive) with the filters applied before the LIMIT; None when the filter
        can match nothing. Both bounds are one range on the position index."""
        conditions = ["position > $1"]
        params: list[Any] = [after]

        def bind(value: Any) -> str:
            params.append(value)
            return f"${len(params)}"

        if stop is not None:
            conditions.append(f"position <= {bind(stop)}")

        # starts_with is an exact, case-sensitive prefix test: unlike LIKE, it has no
        # wildcards, so '%' and '_' in a prefix need no escaping at all.
        prefixes = [log_filter.stream_prefix or ""]
        if log_filter.stream_pattern is not None:
            regex = postgres_regex(log_filter.stream_pattern)
            if regex is None:
                return None
            prefixes.append(literal_prefix(log_filter.stream_pattern))
            conditions.append(f"stream_id ~ {bind(regex)}")
        for prefix in filter(None, prefixes):
            conditions.append(f"starts_with(stream_id, {bind(prefix)})")
        if log_filter.event_types:
            conditions.append(f"event_type = ANY({bind(sorted(log_filter.event_types))}::text[])")
        sql = (
            f"SELECT {_COLUMNS} FROM {self.schema}.events WHERE {' AND '.join(conditions)} "
            "ORDER BY position"
        )
        if limit is not None:
            sql += f" LIMIT {bind(limit)}"
        return sql, params
