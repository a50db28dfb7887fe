"""Correctness smoke test of both append variants (plpgsql function and single-statement
CTE), for every column type, plus a short contention run (multi-stream appends in
random order, 32 tasks on 20 hot streams) that checks for deadlocks, counts conflicts
and verifies the log is gapless and stream versions are contiguous.

    python benchmarks/driver_choice/check.py
"""

import asyncio
import random
import uuid
from pathlib import Path

import asyncpg

DSN = "postgresql://postgres@127.0.0.1:5432/test"
HERE = Path(__file__).parent
SFX = {"jsonb": "", "bytea": "_bytea", "text": "_text"}


def cte_sql(pt: str) -> str:
    return (HERE / "append_cte_template.sql").read_text().replace("__SFX__", SFX[pt]).replace("__PT__", pt)


def fn_sql(pt: str) -> str:
    return (f"SELECT * FROM pgproto.append_events{SFX[pt]}($1::text[], $2::int8[], $3::uuid[], $4::text[],"
            f" $5::text[], $6::{pt}[], $7::{pt}[])")


def val(pt: str, s: str):
    return s.encode() if pt == "bytea" else s


async def append(conn, sql, pt, expected: dict, events: list[str]):
    n = len(events)
    return await conn.fetchrow(sql, list(expected), list(expected.values()), [uuid.uuid4() for _ in range(n)],
                               events, ["T"] * n, [val(pt, '{"a": 1}')] * n, [val(pt, '{"m": 2}')] * n)


async def smoke(conn, kind, pt):
    sql = fn_sql(pt) if kind == "plpgsql" else cte_sql(pt)
    tag = uuid.uuid4().hex[:8]
    a, b, c = f"t-{tag}-a", f"t-{tag}-b", f"t-{tag}-c"
    r = await append(conn, sql, pt, {a: 0, b: 0}, [a, b, a])
    assert r["ok"] and r["n_events"] == 3 and list(r["out_versions"]) == [2, 1], r
    first = r["first_position"]
    rows = await conn.fetch(f"SELECT position, stream_id, stream_version FROM pgproto.events{SFX[pt]} WHERE position >= $1 ORDER BY position", first)
    assert [tuple(x) for x in rows] == [(first, a, 1), (first + 1, b, 1), (first + 2, a, 2)], rows
    # stale written stream -> conflict, nothing written
    r = await append(conn, sql, pt, {a: 1, b: 1}, [a])
    assert not r["ok"] and (r["conflict_stream"], r["conflict_expected"], r["conflict_actual"]) == (a, 1, 2), r
    # stale read-only participant -> conflict
    r = await append(conn, sql, pt, {a: 2, b: 0}, [a])
    assert not r["ok"] and r["conflict_stream"] == b, r
    # current read-only participant (and a missing read-only stream at 0) -> ok
    r = await append(conn, sql, pt, {a: 2, b: 1, c: 0}, [a])
    assert r["ok"] and list(r["out_versions"]) == [3, 1, 0], r
    # missing stream with expected > 0 -> conflict
    r = await append(conn, sql, pt, {f"t-{tag}-d": 5}, [f"t-{tag}-d"])
    assert not r["ok"] and r["conflict_actual"] == 0, r
    head = await conn.fetchval(f"SELECT position FROM pgproto.log_head{SFX[pt]}")
    mx = await conn.fetchval(f"SELECT max(position) FROM pgproto.events{SFX[pt]}")
    assert head == mx, (head, mx)
    print(f"smoke ok: {kind:7s} {pt}")


async def contention(pool, kind, pt, tasks=32, hot=20, seconds=2.0):
    sql = fn_sql(pt) if kind == "plpgsql" else cte_sql(pt)
    streams = [f"hot-{kind}-{i}" for i in range(hot)]
    known = {s: 0 for s in streams}
    stats = {"ok": 0, "conflict": 0, "unique_violation": 0, "deadlock": 0}
    stop = asyncio.get_running_loop().time() + seconds

    async def worker():
        while asyncio.get_running_loop().time() < stop:
            pick = random.sample(streams, 3)  # 2 written + 1 read-only, random order
            exp = {s: known[s] for s in pick}
            try:
                r = await append(pool, sql, pt, exp, [pick[0], pick[1], pick[0]])
            except asyncpg.UniqueViolationError:
                stats["unique_violation"] += 1
                continue
            except asyncpg.DeadlockDetectedError:
                stats["deadlock"] += 1
                continue
            if r["ok"]:
                stats["ok"] += 1
                for s, v in zip(r["out_streams"], r["out_versions"]):
                    known[s] = max(known[s], v)
            else:
                stats["conflict"] += 1
                known[r["conflict_stream"]] = max(known[r["conflict_stream"]], r["conflict_actual"])

    await asyncio.gather(*(worker() for _ in range(tasks)))
    t = SFX[pt]
    gap = await pool.fetchrow(f"SELECT count(*) AS n, min(position) AS lo, max(position) AS hi FROM pgproto.events{t}")
    head = await pool.fetchval(f"SELECT position FROM pgproto.log_head{t}")
    bad_versions = await pool.fetchval(f"""
        SELECT count(*) FROM (SELECT s.stream_id FROM pgproto.streams{t} s
          LEFT JOIN pgproto.events{t} e USING (stream_id) GROUP BY s.stream_id, s.version
         HAVING count(e.*) <> s.version OR coalesce(max(e.stream_version), 0) <> s.version) x""")
    gapless = gap["n"] == gap["hi"] - gap["lo"] + 1 == head
    print(f"contention {kind:7s} {pt}: {stats}; gapless={gapless} (rows={gap['n']}, head={head}); streams with bad versions={bad_versions}")
    assert gapless and bad_versions == 0 and stats["deadlock"] == 0


async def main():
    pool = await asyncpg.create_pool(DSN, min_size=20, max_size=20)
    async with pool.acquire() as conn:
        for kind in ("plpgsql", "cte"):
            for pt in SFX:
                await smoke(conn, kind, pt)
    for kind in ("plpgsql", "cte"):
        await contention(pool, kind, "jsonb")
    await pool.close()


asyncio.run(main())
