#!/bin/sh
# The cost of the log's one-row position counter, measured with pgbench (no Python
# client), as quoted in docs/scaling.md. Two experiments, interleaved, three
# repetitions; report medians and compare within a repetition (the machine is noisy):
#   counter   a one-row counter taken with the inserted rows (the store's pattern)
#             against an identity-column INSERT, 1 and 32 rows per transaction;
#   function  eventcore's own append_batch with 1 or 32 single-event commands per
#             call (fresh streams), against the identity-column INSERT.
# Needs pgbench and the PostgreSQL test database; uses schemas of its own and drops
# them. Usage: sh benchmarks/counter_row.sh [clients...]   (default: 1 4 16 64)
set -e
URL=${EVENTCORE_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/test}
PY=${PYTHON:-.venv/bin/python}
CLIENTS=${*:-1 4 16 64}
DIR=$(mktemp -d)
export PGOPTIONS="-c client_min_messages=warning"
trap 'psql -q "$URL" -c "DROP SCHEMA IF EXISTS ec_counter, ec_counter_fn CASCADE"; rm -rf "$DIR"' EXIT

psql -q "$URL" <<'SQL'
DROP SCHEMA IF EXISTS ec_counter CASCADE;
CREATE SCHEMA ec_counter;
CREATE TABLE ec_counter.head (id int PRIMARY KEY, position bigint NOT NULL);
INSERT INTO ec_counter.head VALUES (1, 0);
CREATE TABLE ec_counter.events (position bigint PRIMARY KEY, stream_id text NOT NULL, payload bytea NOT NULL);
CREATE TABLE ec_counter.plain (position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                               stream_id text NOT NULL, payload bytea NOT NULL);
SQL
# The store's own schema (append_batch and its tables), by its migrations.
$PY -c "
import asyncio
from eventcore.backends.postgres import PostgresConfig, PostgresEventStore
async def main():
    config = PostgresConfig.development('$URL', schema='ec_counter_fn')
    await (await PostgresEventStore.open(config)).close()
asyncio.run(main())"

for k in 1 32; do
  cat > "$DIR/counter$k.sql" <<SQL
WITH h AS (UPDATE ec_counter.head SET position = position + $k WHERE id = 1 RETURNING position)
INSERT INTO ec_counter.events
SELECT position - $k + g, 's-' || :client_id || '-' || g, '\x7b7d' FROM h, generate_series(1, $k) g;
SQL
  cat > "$DIR/plain$k.sql" <<SQL
INSERT INTO ec_counter.plain (stream_id, payload)
SELECT 's-' || :client_id || '-' || g, '\x7b7d' FROM generate_series(1, $k) g;
SQL
  cat > "$DIR/function$k.sql" <<SQL
SELECT count(*) FROM (SELECT array_agg(g ORDER BY g) AS n,
                             array_agg(gen_random_uuid()::text ORDER BY g) AS ids,
                             array_agg(gen_random_uuid() ORDER BY g) AS eids
                        FROM generate_series(1, $k) g) s,
  LATERAL ec_counter_fn.append_batch(s.n, s.n, s.ids, array_fill(0::bigint, ARRAY[$k]),
    s.n, s.n, s.eids, s.ids, array_fill('E'::text, ARRAY[$k]),
    array_fill('\x7b7d'::bytea, ARRAY[$k]), array_fill('\x7b7d'::bytea, ARRAY[$k]));
SQL
done

for rep in 1 2 3; do
  for c in $CLIENTS; do
    for script in counter1 plain1 counter32 plain32 function1 function32; do
      tps=$(pgbench -n -f "$DIR/$script.sql" -c "$c" -j 2 -T 5 "$URL" 2>&1 \
            | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -n 1)
      echo "rep=$rep clients=$c script=$script tps=${tps:-failed}"
    done
  done
done
