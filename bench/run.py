"""`make bench-ours`: checkpoint cost measured on a fresh embedded Postgres with default durability
(fsync on), next to the floor: what one INSERT + COMMIT costs on the same server.

Reports medians (with min and max over repetitions). Results print as a Markdown table and are
written to bench/results/ours.md (bench/compare.py owns latest.md). `--quick` runs fewer iterations.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

from runtime import DBOS, DBOSClient, Queue
from runtime.embedded import EmbeddedPostgres

RESULTS = Path(__file__).resolve().parent / "results"


@DBOS.step()
def trivial_step(i: int) -> int:
    return i


@DBOS.workflow()
def wf_steps(n: int) -> int:
    total = 0
    for i in range(n):
        total += trivial_step(i)
    return total


@DBOS.workflow()
def bench_receiver(count: int) -> list[float]:
    """Receive ``count`` timestamped messages; each latency is receive time minus send time."""
    latencies = []
    for _ in range(count):
        sent_at = DBOS.recv("bench", timeout_seconds=30)
        latencies.append(time.time() - float(sent_at))
    return latencies


@DBOS.step()
async def trivial_step_async(i: int) -> int:
    return i


@DBOS.workflow()
async def wf_steps_async(n: int) -> int:
    total = 0
    for i in range(n):
        total += await trivial_step_async(i)
    return total


def throughput_async(total: int, concurrency: int, steps: int) -> float:
    """Workflows per second of async workflows, ``concurrency`` in flight on one event loop."""

    async def main() -> float:
        gate = asyncio.Semaphore(concurrency)

        async def one() -> None:
            async with gate:
                await wf_steps_async(steps)

        t0 = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(total)))
        return total / (time.perf_counter() - t0)

    return asyncio.run(main())


drain_queue = Queue("bench_drain", concurrency=32)
idle_queue = Queue("bench_idle")


@DBOS.workflow()
def started_at() -> float:
    """Returns when it started, to measure enqueue-to-start latency."""
    return time.time()


def queue_drain(total: int) -> float:
    """Workflows per second draining ``total`` 3-step workflows at concurrency 32."""
    t0 = time.perf_counter()
    handles = [drain_queue.enqueue(wf_steps, 3) for _ in range(total)]
    for h in handles:
        h.get_result()
    return total / (time.perf_counter() - t0)


def enqueue_to_start(count: int, url: str) -> tuple[list[float], list[float]]:
    """Latency from enqueue to the workflow starting on an idle queue: enqueued in this process,
    and enqueued by another program through DBOSClient (woken by NOTIFY alone)."""
    local, remote = [], []
    for _ in range(count):
        t0 = time.time()
        local.append(idle_queue.enqueue(started_at).get_result() - t0)
        time.sleep(0.01)
    with DBOSClient(url) as client:
        for _ in range(count):
            t0 = time.time()
            handle = client.enqueue(
                {"workflow_name": started_at.__qualname__, "queue_name": "bench_idle"}
            )
            remote.append(handle.get_result() - t0)
            time.sleep(0.01)
    return local, remote


SENDER = """
import sys, time
from runtime import DBOSClient
client = DBOSClient(sys.argv[1])
for _ in range(int(sys.argv[3])):
    client.send(sys.argv[2], time.time(), topic="bench")
    time.sleep(0.02)
client.destroy()
"""


def send_to_recv_latency(url: str, count: int) -> list[float]:
    """Median send-to-recv time with the sender in another process (DBOSClient)."""
    handle = DBOS.start_workflow(bench_receiver, count)
    time.sleep(0.3)  # the receiver is waiting in recv
    subprocess.run([sys.executable, "-c", SENDER, url, handle.workflow_id, str(count)], check=True)
    return handle.get_result()


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return samples


def summary(values: list[float], scale: float = 1000.0) -> str:
    v = sorted(x * scale for x in values)
    return f"{statistics.median(v):.3f} (min {v[0]:.3f}, max {v[-1]:.3f})"


def floor_insert(url: str, n: int) -> list[float]:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS floor (id bigserial primary key, v text)")
        return timed(lambda: conn.execute("INSERT INTO floor (v) VALUES (%s)", ("x",)), n)


def throughput(total: int, concurrency: int, steps: int) -> float:
    """Workflows per second with `concurrency` threads each starting workflows in a loop."""
    counter = iter(range(total))
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                nxt = next(counter, None)
            if nxt is None:
                return
            wf_steps(steps)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return total / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer iterations (about a minute)")
    args = parser.parse_args()
    n = 100 if args.quick else 500
    reps = 3 if args.quick else 5
    total = 500 if args.quick else 2000

    base = Path(tempfile.mkdtemp(prefix="dbos-bench-"))
    server = EmbeddedPostgres(base, settings={"max_connections": "300"})
    url = server.start()
    try:
        DBOS(config={"name": "bench", "database_url": url, "application_version": "bench"})
        DBOS.launch()
        for _ in range(50):
            wf_steps(1)  # warm up connections and prepared statements
        rows = []
        floor = [statistics.median(floor_insert(url, n)) for _ in range(reps)]
        rows.append(("Postgres floor: INSERT + COMMIT, 1 client (ms)", summary(floor)))
        for steps in (0, 1, 10):
            per_wf = [statistics.median(timed(lambda s=steps: wf_steps(s), n)) for _ in range(reps)]
            rows.append((f"workflow with {steps} steps, sequential (ms/workflow)", summary(per_wf)))
            if steps:
                zero = statistics.median(
                    [statistics.median(timed(lambda: wf_steps(0), n)) for _ in range(reps)]
                )
                per_step = [(w - zero) / steps for w in per_wf]
                rows.append((f"  per step, {steps}-step workflow (ms/step)", summary(per_step)))
        tput = [throughput(total, 32, 3) for _ in range(max(1, reps // 2))]
        rows.append(
            (
                f"throughput: {total} workflows of 3 steps, 32 threads (workflows/s)",
                summary(tput, scale=1.0),
            )
        )
        async_tput = [throughput_async(total, 32, 3) for _ in range(max(1, reps // 2))]
        rows.append(
            (
                f"async throughput: {total} async workflows of 3 steps, 32 in flight (workflows/s)",
                summary(async_tput, scale=1.0),
            )
        )
        drains = [queue_drain(total) for _ in range(max(1, reps // 2))]
        rows.append(
            (
                f"queue drain: {total} workflows of 3 steps, concurrency 32 (workflows/s)",
                summary(drains, scale=1.0),
            )
        )
        local, remote = enqueue_to_start(30 if args.quick else 100, url)
        rows.append(("enqueue to start, idle queue, same process (ms)", summary(local)))
        rows.append(
            ("enqueue to start, idle queue, DBOSClient in another program (ms)", summary(remote))
        )
        latencies = sorted(send_to_recv_latency(url, 100 if args.quick else 300))
        rows.append(
            (
                "send (other process) to waiting recv returning (ms), median",
                f"{statistics.median(latencies) * 1000:.3f} "
                f"(p99 {latencies[int(len(latencies) * 0.99) - 1] * 1000:.3f})",
            )
        )
    finally:
        DBOS.destroy()
        server.stop()

    table = ["| measure | median (min, max) |", "|---|---|"]
    table += [f"| {name} | {value} |" for name, value in rows]
    text = "\n".join(table)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ours.md").write_text(text + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
