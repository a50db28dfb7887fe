"""Aggregate results.jsonl: medians over repetitions; ratios computed within each repetition
(against that repetition's baseline of the same driver and concurrency), then medianed.

    /work/main/.venv/bin/python /tmp/pgproto/report.py results.jsonl > results.md
"""

import json
import statistics as st
import sys
from collections import defaultdict

rows = [json.loads(line) for line in open(sys.argv[1] if len(sys.argv) > 1 else "results.jsonl")]
DRIVERS = ["psycopg", "asyncpg", "asyncpg-noreset"]
by = defaultdict(list)
for r in rows:
    by[(r["test"], r["variant"], r["conc"], r["driver"])].append(r)
base = {(r["driver"], r["conc"], r["rep"]): r["ops_s"] for r in rows if r["test"] == "baseline"}


def med(xs):
    return st.median(xs) if xs else float("nan")


def cell(test, variant, conc, d, key="ops_s", ratio=False):
    rs = by.get((test, variant, conc, d))
    if not rs:
        return "-"
    v = med([r[key] for r in rs])
    s = f"{v:,.0f}" if key in ("ops_s", "units_s") else f"{v:.2f}"
    if ratio:
        rat = [r["ops_s"] / base[(d, r["conc"], r["rep"])] for r in rs if (d, r["conc"], r["rep"]) in base]
        if rat:
            s += f" ({med(rat):.2f}x)"
    return s


def keys(test):
    return sorted({(k[1], k[2]) for k in by if k[0] == test}, key=lambda x: (x[0], x[1]))


reps = sorted({r["rep"] for r in rows})
print(f"repetitions: {reps}; values are medians; (x) = ratio to the same driver's bare INSERT at the same concurrency\n")
print("## Writes (single-event append, ops/s | p50 ms | p99 ms)\n")
print("| test | conc | " + " | ".join(f"{d} ops/s | p50 | p99" for d in DRIVERS) + " |")
print("|---|---|" + "---|---|---|" * len(DRIVERS))
for test in ("baseline", "append1"):
    for variant, conc in sorted(keys(test), key=lambda x: (x[0], x[1])):
        cells = []
        for d in DRIVERS:
            cells += [cell(test, variant, conc, d, ratio=(test != "baseline")),
                      cell(test, variant, conc, d, "p50_ms"), cell(test, variant, conc, d, "p99_ms")]
        print(f"| {test} {variant} | {conc} | " + " | ".join(cells) + " |")
conf = sum(r.get("conflicts", 0) for r in rows if r["test"] == "append1")
print(f"\nconflicts in append1 runs (single writer per stream): {conf}\n")

print("## 1,000-event batch append to one stream (events/s | p50 ms per call)\n")
print("| variant | " + " | ".join(f"{d} events/s | p50" for d in DRIVERS[:2]) + " |")
print("|---|" + "---|---|" * 2)
for variant, conc in keys("batch1000"):
    print(f"| {variant} | " + " | ".join(f"{cell('batch1000', variant, conc, d, 'units_s')} | {cell('batch1000', variant, conc, d, 'p50_ms')}" for d in DRIVERS[:2]) + " |")

print("\n## Reads, decoded into a slots dataclass per row (payload/metadata as noted)\n")
print("| driver | variant (col:codec[:fmt][:conv]) | payload | read_stream c=1 events/s | p50 ms | read_stream c=16 events/s | read_all 1000 rows/s | p50 ms |")
print("|---|---|---|---|---|---|---|---|")
for d in DRIVERS:
    for variant in sorted({k[1] for k in by if k[0] == "read_all" and k[3] == d}):
        pt = by[("read_all", variant, 1, d)][0].get("payload_type", "?")
        print(f"| {d} | {variant} | {pt} | {cell('read_stream', variant, 1, d, 'units_s')} | {cell('read_stream', variant, 1, d, 'p50_ms')} | "
              f"{cell('read_stream', variant, 16, d, 'units_s')} | {cell('read_all', variant, 1, d, 'units_s')} | {cell('read_all', variant, 1, d, 'p50_ms')} |")

# spread: min..max of ops over reps for the headline rows (noise indicator)
print("\n## Spread over repetitions (min..max ops/s) for headline rows\n")
for (test, variant, conc) in [("baseline", "insert-1row", 1), ("baseline", "insert-1row", 16), ("append1", "plpgsql/jsonb", 1),
                              ("append1", "plpgsql/jsonb", 16), ("append1", "cte/jsonb", 16), ("append1", "plpgsql-seq/jsonb", 16)]:
    parts = []
    for d in DRIVERS:
        rs = by.get((test, variant, conc, d))
        if rs:
            parts.append(f"{d} {min(r['ops_s'] for r in rs):,.0f}..{max(r['ops_s'] for r in rs):,.0f}")
    print(f"- {test} {variant} c={conc}: " + "; ".join(parts))
