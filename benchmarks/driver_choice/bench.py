"""psycopg 3 (AsyncConnectionPool) vs asyncpg (create_pool) on eventcore's append/read paths.

    python benchmarks/driver_choice/bench.py --driver psycopg --rep 1 --out results.jsonl
    drivers: psycopg | asyncpg (default pool reset) | asyncpg-noreset (reset=no-op coroutine)
    --groups write,batch,read (default all), --duration seconds per measurement (default 2.0)

Every measurement: fresh pool of 20 connections, 0.4 s warm-up (prepares statements),
then `duration` seconds measured. One JSON line per measurement appended to --out.
"""

import argparse
import asyncio
import dataclasses
import datetime
import json
import os
import random
import sys
import time
import uuid
from pathlib import Path

import msgspec

DSN = "postgresql://postgres@127.0.0.1:5432/test"
HERE = Path(__file__).parent
SFX = {"jsonb": "", "bytea": "_bytea", "text": "_text"}
POOL = 20
WARMUP = 0.4
N_WRITE_STREAMS = 10_000
N_READ_STREAMS = 1000


@dataclasses.dataclass(slots=True, frozen=True)
class StoredEvent:
    position: int
    event_id: uuid.UUID
    stream_id: str
    stream_version: int
    event_type: str
    payload: bytes
    metadata: bytes
    recorded_at: datetime.datetime


# ---------------------------------------------------------------- payloads (driver-neutral)
def _mk_payloads(n=1000):
    out = []
    for i in range(n):
        out.append(msgspec.json.encode({
            "order_id": str(uuid.uuid4()), "customer": f"cust-{i % 997}", "amount_cents": i * 7919 % 100000,
            "currency": "EUR", "lines": [{"sku": f"SKU-{i % 50}", "qty": 1 + i % 5, "price_cents": 1999},
                                         {"sku": f"SKU-{i % 31}", "qty": 2, "price_cents": 4999}],
            "note": f"bench event number {i}"}))
    return out


PAYLOADS = _mk_payloads()
META = msgspec.json.encode({"correlation_id": str(uuid.uuid4()), "causation_id": str(uuid.uuid4()),
                            "user": "alice", "source": "bench"})


# ---------------------------------------------------------------- SQL
def fn_sql(pt):
    return (f"SELECT * FROM pgproto.append_events{SFX[pt]}($1::text[], $2::int8[], $3::uuid[], $4::text[],"
            f" $5::text[], $6::{pt}[], $7::{pt}[])")


def cte_sql(pt):
    return (HERE / "append_cte_template.sql").read_text().replace("__SFX__", SFX[pt]).replace("__PT__", pt)


def append_sql(kind, pt):
    if kind == "plpgsql-seq":  # diagnostic: positions from a sequence, no log_head lock (NOT gapless)
        return fn_sql(pt).replace("append_events(", "append_events_seq(")
    return fn_sql(pt) if kind == "plpgsql" else cte_sql(pt)


BASELINE_SQL = "INSERT INTO pgproto.baseline (v) VALUES ($1)"
COLS = "position, event_id, stream_id, stream_version, event_type, payload, metadata, recorded_at"


def read_stream_sql(pt):
    return (f"SELECT {COLS} FROM pgproto.events{SFX[pt]} WHERE stream_id = $1 AND stream_version > $2"
            f" ORDER BY stream_version LIMIT 100")


def read_all_sql(pt):
    return f"SELECT {COLS} FROM pgproto.events{SFX[pt]} WHERE position > $1 ORDER BY position LIMIT 1000"


def to_psycopg(sql):
    """$n -> %(pn)b: named (the CTE reuses parameters) and BINARY: with %s (auto/text) psycopg
    builds text array literals in Python, ~20 ms per 1000 JSON strings; with %b it is ~0.2 ms."""
    import re
    return re.sub(r"\$(\d+)", r"%(p\1)b", sql.replace("%", "%%"))


def pparams(args):
    return {f"p{i + 1}": a for i, a in enumerate(args)}


# ---------------------------------------------------------------- drivers
# A driver object exposes: fetchrow(sql, args) -> row, execute(sql, args), fetch(sql, args) -> rows,
# close(). Payload values for each column type are produced by enc_payload(bytes).
def _ident(x):
    return x


class Psycopg:
    name = "psycopg"

    @classmethod
    async def open(cls, codec="default", binary=False):
        import psycopg
        from psycopg.adapt import Loader
        from psycopg.types.json import Jsonb, set_json_dumps
        from psycopg.types.string import TextLoader
        from psycopg_pool import AsyncConnectionPool

        set_json_dumps(_ident)  # Jsonb(b) dumps the msgspec bytes as-is (no json.dumps)

        class JsonbBytesLoader(Loader):
            def load(self, data):
                return bytes(data)

        class JsonbBytesBinaryLoader(Loader):
            format = psycopg.pq.Format.BINARY

            def load(self, data):
                return bytes(data[1:])

        async def configure(conn):
            if codec == "bytes":
                conn.adapters.register_loader("jsonb", JsonbBytesLoader)
                conn.adapters.register_loader("jsonb", JsonbBytesBinaryLoader)
            elif codec == "str":
                conn.adapters.register_loader("jsonb", TextLoader)  # C loader, text format only

        self = cls()
        self.Jsonb = Jsonb
        self.codec = codec
        self.binary = binary
        self.pool = AsyncConnectionPool(
            DSN, min_size=POOL, max_size=POOL, open=False, configure=configure,
            kwargs={"autocommit": True, "prepare_threshold": 0})
        await self.pool.open(wait=True)
        self._q = {}
        return self

    def q(self, sql):
        r = self._q.get(sql)
        if r is None:
            r = self._q[sql] = to_psycopg(sql)
        return r

    def enc_payload(self, pt, b):
        if pt == "jsonb":
            return b.decode() if self.codec == "str" else self.Jsonb(b)
        return b if pt == "bytea" else b.decode()

    async def fetchrow(self, sql, args):
        async with self.pool.connection() as conn:
            cur = await conn.execute(self.q(sql), pparams(args))
            return await cur.fetchone()

    async def execute(self, sql, args):
        async with self.pool.connection() as conn:
            await conn.execute(self.q(sql), pparams(args))

    async def fetch(self, sql, args):
        async with self.pool.connection() as conn:
            cur = await conn.execute(self.q(sql), pparams(args), binary=self.binary)
            return await cur.fetchall()

    async def close(self):
        await self.pool.close()


class Asyncpg:
    name = "asyncpg"
    noreset = False

    @classmethod
    async def open(cls, codec="default", binary=None):
        import asyncpg

        async def init(conn):
            if codec == "bytes":
                await conn.set_type_codec("jsonb", schema="pg_catalog", format="binary",
                                          encoder=lambda b: b"\x01" + b, decoder=lambda b: b[1:])

        async def noop_reset(conn):
            pass

        self = cls()
        self.codec = codec
        kw = {"reset": noop_reset} if cls.noreset else {}
        self.pool = await asyncpg.create_pool(DSN, min_size=POOL, max_size=POOL, init=init, **kw)
        return self

    def enc_payload(self, pt, b):
        if pt == "jsonb":
            return b if self.codec == "bytes" else b.decode()
        return b if pt == "bytea" else b.decode()

    async def fetchrow(self, sql, args):
        return await self.pool.fetchrow(sql, *args)

    async def execute(self, sql, args):
        await self.pool.execute(sql, *args)

    async def fetch(self, sql, args):
        return await self.pool.fetch(sql, *args)

    async def close(self):
        await self.pool.close()


class AsyncpgNoReset(Asyncpg):
    name = "asyncpg-noreset"
    noreset = True


DRIVERS = {"psycopg": Psycopg, "asyncpg": Asyncpg, "asyncpg-noreset": AsyncpgNoReset}


# ---------------------------------------------------------------- harness
async def run_phase(op, conc, seconds, lat=None, min_ops=0):
    loop = asyncio.get_running_loop()
    stop = loop.time() + seconds
    counts = [0] * conc
    ops = [0] * conc
    pc = time.perf_counter

    async def worker(i):
        while loop.time() < stop or ops[i] < min_ops:
            t0 = pc()
            counts[i] += await op(i)
            if lat is not None:
                lat.append(pc() - t0)
            ops[i] += 1

    t0 = pc()
    await asyncio.gather(*(worker(i) for i in range(conc)))
    return sum(ops), sum(counts), pc() - t0


async def measure(drv, test, variant, conc, op, duration, out, extra=None):
    # Warm-up: POOL concurrent tasks, >= 6 calls each, so every pooled connection has
    # prepared the statement and plpgsql has settled on its plan (custom plans for the
    # first 5 executions per session). psycopg_pool hands out connections FIFO
    # (round-robin), asyncpg LIFO-ish, so a low-concurrency run would otherwise keep
    # hitting cold connections with psycopg only.
    await run_phase(op, POOL, WARMUP, min_ops=6)
    if extra and "conflicts" in extra:
        extra["conflicts"] = 0
    lat = []
    n_ops, units, el = await run_phase(op, conc, duration, lat)
    lat.sort()
    rec = {"driver": drv.name, "test": test, "variant": variant, "conc": conc,
           "ops_s": n_ops / el, "units_s": units / el,
           "p50_ms": lat[len(lat) // 2] * 1e3, "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1e3,
           "n_ops": n_ops}
    if extra:
        rec.update(extra)
    out.write(json.dumps(rec) + "\n")
    out.flush()
    print(f"  {rec['driver']:16s} {test:12s} {variant:22s} c={conc:<3d} {rec['ops_s']:9.0f} op/s"
          f" {rec['units_s']:10.0f} u/s  p50 {rec['p50_ms']:6.2f} ms  p99 {rec['p99_ms']:6.2f} ms"
          + (f"  {extra}" if extra else ""), flush=True)


async def load_versions(drv, pt):
    rows = await drv.fetch(f"SELECT stream_id, version FROM pgproto.streams{SFX[pt]} WHERE stream_id LIKE 'w-%'", [])
    return {r[0]: r[1] for r in rows}


# ---------------------------------------------------------------- tests
async def t_baseline(D, conc, dur, out):
    drv = await D.open()
    try:
        async def op(i):
            await drv.execute(BASELINE_SQL, ["x"])
            return 1
        await measure(drv, "baseline", "insert-1row", conc, op, dur, out)
    finally:
        await drv.close()


async def t_append1(D, kind, pt, conc, dur, out, codec="bytes"):
    drv = await D.open(codec=codec)
    try:
        sql = append_sql(kind, pt)
        versions = await load_versions(drv, pt)
        shards = [[f"w-{j}" for j in range(i, N_WRITE_STREAMS, conc)] for i in range(conc)]
        meta = drv.enc_payload(pt, META)
        stats = {"conflicts": 0}

        async def op(i):
            s = random.choice(shards[i % conc])
            r = await drv.fetchrow(sql, [[s], [versions[s]], [uuid.uuid4()], [s], ["OrderPlaced"],
                                         [drv.enc_payload(pt, random.choice(PAYLOADS))], [meta]])
            if r[0]:
                versions[s] = r[4][0]
            else:
                stats["conflicts"] += 1
                versions[s] = r[7]
            return 1
        await measure(drv, "append1", f"{kind}/{pt}", conc, op, dur, out, stats)
    finally:
        await drv.close()


async def t_batch(D, kind, pt, dur, out, codec="bytes", n=1000):
    drv = await D.open(codec=codec)
    try:
        sql = append_sql(kind, pt)
        base = f"b-{D.name}-{os.getpid()}-{kind}-{pt}-{codec}"
        state = {}  # task -> version of its own stream
        meta = drv.enc_payload(pt, META)

        async def op(i):
            s = f"{base}-{i}"
            ids = [uuid.uuid4() for _ in range(n)]
            pls = [drv.enc_payload(pt, p) for p in PAYLOADS[:n]]
            r = await drv.fetchrow(sql, [[s], [state.get(i, 0)], ids, [s] * n, ["OrderPlaced"] * n, pls, [meta] * n])
            assert r[0], r
            state[i] = r[4][0]
            return n
        label = f"{kind}/{pt}" + ("" if codec == "bytes" or pt != "jsonb" else f"({codec})")
        await measure(drv, "batch1000", label, 1, op, dur, out)
    finally:
        await drv.close()


def decoder(conv):
    E = StoredEvent
    if conv == "encode":  # str payload/metadata -> bytes
        return lambda rows: [E(r[0], r[1], r[2], r[3], r[4], r[5].encode(), r[6].encode(), r[7]) for r in rows]
    return lambda rows: [E(*r) for r in rows]


async def t_reads(D, pt, codec, binary, conv, dur, out, conc_stream=(1,)):
    drv = await D.open(codec=codec, binary=binary)
    label = f"{pt}:{codec}" + (":bin" if binary else "") + (":" + conv if conv != "none" else "")
    if D is Psycopg and not binary:
        label += ":txt"
    try:
        dec = decoder(conv)
        rs, ra = read_stream_sql(pt), read_all_sql(pt)
        sample = dec(await drv.fetch(rs, ["r-1", 0]))
        assert len(sample) == 100, len(sample)
        ptype = type(sample[0].payload).__name__

        async def op_stream(i):
            return len(dec(await drv.fetch(rs, [f"r-{random.randrange(N_READ_STREAMS)}", 0])))

        async def op_all(i):
            return len(dec(await drv.fetch(ra, [random.randrange(0, 99_000)])))
        for c in conc_stream:
            await measure(drv, "read_stream", label, c, op_stream, dur, out, {"payload_type": ptype})
        await measure(drv, "read_all", label, 1, op_all, dur, out, {"payload_type": ptype})
    finally:
        await drv.close()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--driver", required=True, choices=DRIVERS)
    ap.add_argument("--rep", type=int, default=0)
    ap.add_argument("--out", default=str(HERE / "results.jsonl"))
    ap.add_argument("--duration", type=float, default=2.0)
    ap.add_argument("--groups", default="write,batch,read")
    a = ap.parse_args()
    D = DRIVERS[a.driver]
    groups = a.groups.split(",")
    dur = a.duration
    with open(a.out, "a") as f:
        out = _Tag(f, a.rep)
        if "write" in groups:
            for c in (1, 16, 64):
                await t_baseline(D, c, dur, out)
                await t_append1(D, "plpgsql", "jsonb", c, dur, out)
                await t_append1(D, "cte", "jsonb", c, dur, out)
            for pt in ("bytea", "text"):
                await t_append1(D, "plpgsql", pt, 16, dur, out)
            for c in (16, 64):
                await t_append1(D, "plpgsql-seq", "jsonb", c, dur, out)
        if "batch" in groups:
            for pt in ("jsonb", "bytea", "text"):
                await t_batch(D, "plpgsql", pt, dur, out)
            await t_batch(D, "plpgsql", "jsonb", dur, out, codec="str")
            await t_batch(D, "cte", "jsonb", dur, out)
        if "read" in groups:
            if D is Psycopg:
                await t_reads(D, "jsonb", "default", False, "none", dur, out)  # dict (json.loads)
                await t_reads(D, "jsonb", "str", False, "none", dur, out)      # str, C TextLoader
                await t_reads(D, "jsonb", "str", False, "encode", dur, out)
                for binary in (False, True):
                    await t_reads(D, "jsonb", "bytes", binary, "none", dur, out, (1, 16))
                    await t_reads(D, "bytea", "default", binary, "none", dur, out, (1, 16))
                    await t_reads(D, "text", "default", binary, "encode", dur, out)
            elif D is AsyncpgNoReset:
                await t_reads(D, "jsonb", "bytes", None, "none", dur, out, (1, 16))
                await t_reads(D, "bytea", "default", None, "none", dur, out, (1, 16))
            else:
                await t_reads(D, "jsonb", "default", None, "none", dur, out)    # str
                await t_reads(D, "jsonb", "default", None, "encode", dur, out)
                await t_reads(D, "jsonb", "bytes", None, "none", dur, out, (1, 16))
                await t_reads(D, "bytea", "default", None, "none", dur, out, (1, 16))
                await t_reads(D, "text", "default", None, "encode", dur, out)


class _Tag:
    def __init__(self, f, rep):
        self.f, self.rep = f, rep

    def write(self, s):
        d = json.loads(s)
        d["rep"] = self.rep
        self.f.write(json.dumps(d) + "\n")

    def flush(self):
        self.f.flush()


if __name__ == "__main__":
    asyncio.run(main())
