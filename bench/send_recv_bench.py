"""Send to a waiting recv from another process, leg by leg, on a fresh embedded Postgres: as
``make bench``'s row (a DBOSClient in another process sends ``--count`` messages 20 ms apart to a
workflow looping in ``DBOS.recv``), with timestamps taken at each hand-off:

- ``send``: the client's ``send`` call (serialize, its statement, the reply);
- ``notify``: from the client's reply to the listener thread's dispatch of the NOTIFY;
- ``wake``: from the dispatch to the waiting thread running again;
- ``consume``: from there to recv's return (its consume-and-record statement);
- ``total``: the bench's latency (``time.time()`` at recv's return minus just before send).

Round trips are counted with pg_stat_statements: per send (the client's database) and per recv.

    python bench/send_recv_bench.py [--count 200] [--rounds 1] [TREE ...]

Each TREE is a checkout of this runtime (default: this one); several are interleaved on one
server. Prints each leg's median, 10th and 90th percentile (ms).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from servers import fresh_database, interleaved, server

RECEIVER = r"""
import json, logging, subprocess, sys, threading, time
from runtime import DBOS
from runtime import listener as listener_mod
from runtime import listener
logging.getLogger("dbos").setLevel(logging.WARNING)
url, count, sender = sys.argv[1], int(sys.argv[2]), sys.argv[3]
dispatched = []
woke = []
original_dispatch = listener.NotificationListener._dispatch
def timed_dispatch(self, channel, payload):
    if channel == "dbos_notifications_channel":
        dispatched.append(time.time())
    original_dispatch(self, channel, payload)
listener.NotificationListener._dispatch = timed_dispatch
original_wait = listener.Watch.wait
def timed_wait(self, seconds):
    woken = original_wait(self, seconds)
    if woken:
        woke.append(time.time())
    return woken
listener.Watch.wait = timed_wait
from runtime.system_db import SystemDatabase
recv_calls = []
original_recv = SystemDatabase.recv
def timed_recv(self, *a, **k):
    t0 = time.time()
    result = original_recv(self, *a, **k)
    if result.recorded:
        recv_calls.append((t0, time.time()))
    return result
SystemDatabase.recv = timed_recv

@DBOS.step()
def trivial(i: int) -> int:
    return i

@DBOS.workflow()
def steps_wf() -> int:
    return trivial(1) + trivial(2)

@DBOS.workflow()
def receiver(n: int) -> list:
    out = []
    for _ in range(n):
        sent = DBOS.recv("bench", timeout_seconds=60)
        out.append([time.time(), *sent])
    return out

DBOS(config={"name": "send-recv-bench", "database_url": url})
DBOS.launch()
# As in make bench, the process has run work on 32 threads first: its pool holds 32 connections.
def burst() -> None:
    for _ in range(20):
        steps_wf()
workers = [threading.Thread(target=burst) for _ in range(32)]
for t in workers:
    t.start()
for t in workers:
    t.join()
handle = DBOS.start_workflow(receiver, 3)  # warm up
time.sleep(0.3)
subprocess.run([sys.executable, "-c", sender, url, handle.workflow_id, "3"], check=True)
handle.get_result()
import psycopg
def calls():
    with psycopg.connect(url) as conn:
        return {q: [c, t] for q, c, t in conn.execute(
            "SELECT query, calls, mean_exec_time FROM pg_stat_statements WHERE dbid = "
            "(SELECT oid FROM pg_database WHERE datname = current_database())")}
dispatched.clear(); woke.clear(); recv_calls.clear()
handle = DBOS.start_workflow(receiver, count)
time.sleep(0.5)
with psycopg.connect(url) as conn:
    conn.execute("SELECT pg_stat_statements_reset()")
subprocess.run([sys.executable, "-c", sender, url, handle.workflow_id, str(count)], check=True)
rows = handle.get_result()
stats = calls()
out = {"rows": rows, "dispatched": dispatched, "woke": woke, "recv": recv_calls}
print(json.dumps({**out, "stats": stats}))
DBOS.destroy()
"""

# The sender's reply time cannot ride in the message it sends; it is measured separately below.
SENDER_TIMED = r"""
import json, sys, time
from runtime import DBOSClient
client = DBOSClient(database_url=sys.argv[1])
out = []
for _ in range(int(sys.argv[3])):
    t0 = time.time()
    client.send(sys.argv[2], [t0, 0.0], topic="bench")
    out.append((t0, time.time()))
    time.sleep(0.02)
client.destroy()
print(json.dumps(out), file=sys.stderr)
"""


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(len(s) * p))]


def one_run(tree: Path, url: str, count: int) -> dict[str, list[float]]:
    env = dict(os.environ, PYTHONPATH=str(tree))
    done = subprocess.run(
        [sys.executable, "-c", RECEIVER, url, str(count), SENDER_TIMED],
        env=env,
        cwd=tempfile.gettempdir(),
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    out = json.loads(done.stdout.strip().splitlines()[-1])
    sends = json.loads(done.stderr.strip().splitlines()[-1])
    rows, dispatched, woke = out["rows"], out["dispatched"], out["woke"]
    names = (
        "send",
        "notify",
        "wake",
        "consume",
        "  before RECV",
        "  RECV",
        "  after RECV",
        "total",
    )
    legs: dict[str, list[float]] = {k: [] for k in names}
    for (t_ret, t0, _), (s0, s1) in zip(rows, sends[-len(rows) :], strict=True):
        assert abs(t0 - s0) < 1e-6
        legs["total"].append((t_ret - t0) * 1000)
        legs["send"].append((s1 - s0) * 1000)
        d = next((x for x in dispatched if x >= s0), None)
        w = next((x for x in woke if d is not None and x >= d), None)
        if d is not None and w is not None and w <= t_ret:
            legs["notify"].append((d - s1) * 1000)
            legs["wake"].append((w - d) * 1000)
            legs["consume"].append((t_ret - w) * 1000)
            r = next((x for x in out["recv"] if x[0] >= w), None)
            if r is not None and r[1] <= t_ret:
                legs["  before RECV"].append((r[0] - w) * 1000)
                legs["  RECV"].append((r[1] - r[0]) * 1000)
                legs["  after RECV"].append((t_ret - r[1]) * 1000)
    # The statements run at least once per message (the rest is background: heartbeats, polls).
    for query, (calls, mean_ms) in sorted(out["stats"].items(), key=lambda qc: -qc[1][0]):
        if calls >= len(rows) and "pg_stat_statements" not in query:
            text = " ".join(query.split())[:90]
            print(
                f"    {calls / len(rows):5.2f} per message, {mean_ms:.3f} ms in the server: {text}"
            )
    return legs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("trees", nargs="*", default=[str(Path(__file__).resolve().parents[1])])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    trees = [Path(t).resolve() for t in args.trees]
    results: dict[int, dict[str, list[float]]] = {i: {} for i in range(len(trees))}
    with server("send-recv") as url:
        for n, i, tree in interleaved(trees, args.rounds):
            legs = one_run(tree, fresh_database(url, f"send_recv_{i}_{n}"), args.count)
            for k, v in legs.items():
                results[i].setdefault(k, []).extend(v)
            print(
                f"{tree} round {n}: total median {statistics.median(legs['total']):.2f} ms",
                flush=True,
            )
    for i, tree in enumerate(trees):
        print(tree)
        for k, xs in results[i].items():
            print(
                f"  {k:24} median {statistics.median(xs):8.3f}  p10 {pct(xs, 0.1):8.3f}  "
                f"p90 {pct(xs, 0.9):8.3f}  (n={len(xs)})"
            )


if __name__ == "__main__":
    main()
