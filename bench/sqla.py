"""Per-transaction cost of ``DBOS.sql_session`` with and without SQLAlchemy: one INSERT per
transaction, as plain psycopg SQL, as SQLAlchemy ``text()`` and as an ORM ``add``; each
transaction recorded in a workflow (10 per workflow) and unrecorded (outside a workflow).

    python bench/sqla.py [/path/to/baseline-checkout] [--rounds 3]

Runs this checkout (and the baseline's psycopg idiom, when given) in fresh processes on an
embedded Postgres, alternating; prints the medians of each run's best wall time and Python CPU
time, in ms per transaction (CPU is the steadier figure on a shared machine).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg

from runtime.embedded import EmbeddedPostgres

WORKLOAD = """
import logging, sys, time
from runtime import DBOS
logging.getLogger("dbos").setLevel(logging.WARNING)
MODE = sys.argv[2]
if MODE != "psycopg":
    import sqlalchemy as sa
    from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

    class Base(DeclarativeBase):
        pass

    class Row(Base):
        __tablename__ = "rows"
        id: Mapped[int] = mapped_column(primary_key=True)
        v: Mapped[int]

@DBOS.transaction()
def tx(i: int) -> int:
    if MODE == "psycopg":
        DBOS.sql_session.execute("INSERT INTO rows (v) VALUES (%s)", (i,))
    elif MODE == "text":
        DBOS.sql_session.execute(sa.text("INSERT INTO rows (v) VALUES (:v)"), {"v": i})
    else:
        DBOS.sql_session.add(Row(v=i))
    return i

@DBOS.workflow()
def wf(n: int) -> int:
    return sum(tx(i) for i in range(n))

DBOS(config={"name": "sqla-bench", "database_url": sys.argv[1]})
DBOS.launch()
import psycopg
with psycopg.connect(sys.argv[1], autocommit=True) as conn:
    conn.execute("CREATE TABLE IF NOT EXISTS rows (id serial PRIMARY KEY, v int)")
for i in range(200):
    tx(i)
wf(10)

def timed(fn, n):
    c0, t0 = time.process_time(), time.perf_counter()
    fn()
    return (time.perf_counter() - t0) / n * 1000, (time.process_time() - c0) / n * 1000

def recorded():
    for _ in range(40):
        wf(10)

def unrecorded():
    for i in range(400):
        tx(i)

rec = [timed(recorded, 400) for _ in range(3)]
unrec = [timed(unrecorded, 400) for _ in range(3)]
best = lambda rows, i: min(r[i] for r in rows)
print(best(rec, 0), best(rec, 1), best(unrec, 0), best(unrec, 1))
DBOS.destroy()
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("baseline", nargs="?")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    here = Path(__file__).resolve().parent.parent
    runs = [("this: psycopg", here, "psycopg"), ("this: text()", here, "text")]
    runs.append(("this: ORM add", here, "orm"))
    if args.baseline:
        runs.insert(0, ("baseline: psycopg", Path(args.baseline).resolve(), "psycopg"))
    server = EmbeddedPostgres(Path(tempfile.mkdtemp(prefix="dbos-sqla-")))
    url = server.start()
    results: dict[str, list[list[float]]] = {label: [] for label, _, _ in runs}
    try:
        for n in range(args.rounds):
            for k, (label, tree, mode) in enumerate(runs if n % 2 == 0 else runs[::-1]):
                name = f"sqla_{n}_{k}"
                with psycopg.connect(url, autocommit=True) as conn:
                    conn.execute(f'CREATE DATABASE "{name}"')
                done = subprocess.run(
                    [sys.executable, "-c", WORKLOAD, url.rsplit("/", 1)[0] + "/" + name, mode],
                    env=dict(os.environ, PYTHONPATH=str(tree)),
                    capture_output=True,
                    text=True,
                    cwd=tempfile.gettempdir(),
                    check=True,
                )
                row = [float(x) for x in done.stdout.split()[-4:]]
                results[label].append(row)
                print(label, n, " ".join(f"{x:.3f}" for x in row), flush=True)
    finally:
        server.stop()
    print("| | recorded ms/tx | CPU | unrecorded ms/tx | CPU |\n|---|---|---|---|---|")
    for label, rows in results.items():
        medians = [statistics.median(col) for col in zip(*rows, strict=True)]
        print(f"| {label} | " + " | ".join(f"{m:.3f}" for m in medians) + " |")


if __name__ == "__main__":
    main()
