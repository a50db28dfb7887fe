"""Create schema pgproto, render the SQL templates for jsonb/bytea/text, seed data.

    /work/main/.venv/bin/python /tmp/pgproto/setup.py          # (re)create + seed
    /work/main/.venv/bin/python /tmp/pgproto/setup.py --drop   # DROP SCHEMA pgproto CASCADE
"""

import sys
from pathlib import Path

import psycopg

DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test"
HERE = Path(__file__).parent
VARIANTS = {"jsonb": "", "bytea": "_bytea", "text": "_text"}  # column type -> suffix
N_READ_STREAMS = 1000  # 'r-<i>' streams, 100 events each (read benchmarks)
N_WRITE_STREAMS = 10_000  # 'w-<i>' streams, created at version 0 (append benchmarks)


def render(template: str, pt: str) -> str:
    return template.replace("__SFX__", VARIANTS[pt]).replace("__PT__", pt)


def to_col(expr: str, pt: str) -> str:
    return {"jsonb": expr, "text": f"({expr})::text", "bytea": f"convert_to(({expr})::text, 'UTF8')"}[pt]


def main() -> None:
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS pgproto CASCADE")
        if "--drop" in sys.argv:
            print("dropped schema pgproto")
            return
        conn.execute("CREATE SCHEMA pgproto")
        conn.execute("CREATE TABLE pgproto.baseline (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v text NOT NULL)")
        tpl = (HERE / "schema_template.sql").read_text()
        rendered = []
        for pt in VARIANTS:
            sql = render(tpl, pt)
            rendered.append(f"-- ===== {pt} =====\n{sql}")
            conn.execute(sql)
        (HERE / "schema_rendered.sql").write_text("\n".join(rendered))
        # diagnostic only: same function, positions from a sequence instead of the log_head
        # row lock (NOT commit-ordered, NOT gapless) -- shows what the lock costs.
        fn = render(tpl, "jsonb")
        fn = fn[fn.index("CREATE OR REPLACE FUNCTION"):].replace("append_events(", "append_events_seq(")
        a = fn.index("        UPDATE pgproto.log_head")
        b = fn.index("INTO v_first;") + len("INTO v_first;")
        fn = fn[:a] + "        -- (log_head lock removed)" + fn[b:]
        fn = fn.replace("v_first + u.ord - 1", "nextval('pgproto.diag_pos_seq')")
        conn.execute("CREATE SEQUENCE pgproto.diag_pos_seq START 1000000000000")
        conn.execute(fn)
        (HERE / "diag_append_seq.sql").write_text(fn)
        cte = (HERE / "append_cte_template.sql").read_text()
        (HERE / "append_cte_rendered.sql").write_text(
            "\n".join(f"-- ===== {pt} =====\n{render(cte, pt)};\n" for pt in VARIANTS))
        n_read = N_READ_STREAMS * 100
        payload = ("jsonb_build_object('order_id', gen_random_uuid(), 'customer', 'cust-' || (g % 997),"
                   " 'amount_cents', (g * 7919) % 100000, 'currency', 'EUR',"
                   " 'lines', jsonb_build_array(jsonb_build_object('sku', 'SKU-' || (g % 50), 'qty', 1 + g % 5, 'price_cents', 1999),"
                   " jsonb_build_object('sku', 'SKU-' || (g % 31), 'qty', 2, 'price_cents', 4999)),"
                   " 'note', 'seeded event number ' || g)")
        meta = ("jsonb_build_object('correlation_id', gen_random_uuid(), 'causation_id', gen_random_uuid(),"
                " 'user', 'alice', 'source', 'setup')")
        for pt, sfx in VARIANTS.items():
            conn.execute(f"""
                INSERT INTO pgproto.events{sfx} (position, event_id, stream_id, stream_version, event_type, payload, metadata)
                SELECT g, gen_random_uuid(), 'r-' || ((g - 1) % {N_READ_STREAMS}), ((g - 1) / {N_READ_STREAMS}) + 1, 'OrderPlaced',
                       {to_col(payload, pt)}, {to_col(meta, pt)}
                  FROM generate_series(1, {n_read}) g""")
            conn.execute(f"UPDATE pgproto.log_head{sfx} SET position = {n_read}")
            conn.execute(f"""
                INSERT INTO pgproto.streams{sfx} (stream_id, version)
                SELECT 'r-' || i, 100 FROM generate_series(0, {N_READ_STREAMS - 1}) i
                UNION ALL
                SELECT 'w-' || i, 0 FROM generate_series(0, {N_WRITE_STREAMS - 1}) i""")
            conn.execute(f"VACUUM ANALYZE pgproto.events{sfx}")
            conn.execute(f"VACUUM ANALYZE pgproto.streams{sfx}")
        row = conn.execute("SELECT avg(octet_length(payload::text)), avg(octet_length(metadata::text)) FROM pgproto.events").fetchone()
        print(f"seeded {n_read} events x {len(VARIANTS)} variants; avg payload {row[0]:.0f} B, metadata {row[1]:.0f} B")


if __name__ == "__main__":
    main()
