"""Parked waits: many workflows blocked in durable waits at once, in one process.

Two workloads, each in a fresh child process (so threads and RSS are that process's own) on a
fresh database:

- **sleepers**: N workflows each run one step, then ``DBOS.sleep`` until a common wall-clock
  instant T (the step returns T - now, so all wake at T). T is chosen ahead of the start, from a
  conservative guess of the start rate, so that every start has completed before it (the output
  says by how much: ``slack_s``). Measured: the time to start them all with
  ``DBOS.start_workflow`` (and the rate); the process's peak thread count
  (``threading.active_count()``, which counts the main thread and this benchmark's monitor
  thread too, and the OS's count from /proc) and RSS (VmHWM, and VmRSS while all wait); the peak
  number of Postgres connections to the database (``pg_stat_activity``, the monitor's own left
  out); and the time from T until all are SUCCESS (the last ``updated_at`` of the run's rows) and
  the finishing rate (N / that time).
- **recv**: N workflows each run one step, then wait in ``DBOS.recv(topic, 600)``. Once every
  step has run and a few seconds more have passed (a wait parks after about 1 s), another process
  sends one message to each (``DBOSClient``; one process of 16 threads, ``PARKED_SENDERS=PxT``
  for P processes of T threads). Measured: the time from the first send until all are SUCCESS
  and the rate, next to how long the sends themselves took (when the wake-ups trail the last
  send by little, the sends set the pace).

The same code runs on this runtime (``--system ours``, ``max_executor_threads`` 64, its default)
and on DBOS Transact (``--system peer``, from its own virtual environment, with its default
executor, which has no thread limit: a waiting workflow holds a thread).

    python bench/parked.py [--n 10000] [--big] [--system ours|peer] [--url URL]
                           [--markdown bench/results/parked.md]

Prints one JSON object. Without ``--url`` it starts an embedded Postgres in a temporary folder.
With ``--url`` it creates (and afterwards drops) one database per workload on that server, or
uses the URL's own database when it may not create one (each run's rows are told apart by their
application version). ``--big`` adds the sleepers at 100,000 (this runtime only). Run by
``make bench`` (bench/compare.py, which adds the section to bench/results/latest.md) and
``make bench-parked`` (100,000 sleepers, bench/results/parked.md).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from runtime import DBOS

ROOT = Path(__file__).resolve().parent.parent
PEER_PYTHON = ROOT / ".bench" / "peer-venv" / "bin" / "python"

MAX_EXECUTOR_THREADS = 64  # ours: the configured bound (also the runtime's default)
THREAD_ALLOWANCE = 16  # the target: threads within max_executor_threads plus this
RSS_TARGET_MB = 1024  # the target: 100,000 sleepers under 1 GB
RATE_TARGET = 1000.0  # wf/s: starting 10,000, and waking 10,000 and finishing them
TOPIC = "wake"
# A wait parks after about 1 s in place; the messages are sent this long after the last step ran.
SETTLE_S = 3.0
# The senders of the recv workload: processes, and threads in each (one DBOSClient a process).
SENDER_PROCESSES, SENDER_THREADS = (
    int(x) for x in os.environ.get("PARKED_SENDERS", "1x16").split("x")
)
# How fast each system is assumed to start workflows when T is chosen (conservative: T must
# come after the last start); and the margin added.
START_RATE_GUESS = {"ours": 300.0, "peer": 50.0}
MARGIN_S = 10.0
PHASES = ("start", "parked", "wake")


# -- the child: one workload in a process of its own -----------------------------------------


def read_status() -> dict[str, int]:
    """Threads, VmRSS and VmHWM (kB) of this process, from /proc/self/status."""
    out: dict[str, int] = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("Threads", "VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
    return out


@dataclass
class Peaks:
    threads: int = 0
    os_threads: int = 0
    rss_kb: int = 0
    pg_connections: int = 0


class Monitor(threading.Thread):
    """Samples this process's threads and RSS (every 20 ms) and the database's connections
    (every 250 ms, from a connection of its own, not counted), each phase apart; in the wake
    phase, also how many of the run's workflows are SUCCESS."""

    def __init__(self, url: str, tag: str) -> None:
        super().__init__(name="parked-monitor", daemon=True)
        import psycopg

        self.conn = psycopg.connect(url, autocommit=True)
        self.tag = tag
        self.phase = "start"
        self.peaks = {phase: Peaks() for phase in PHASES}
        self.succeeded = 0
        self.count_success = False
        self.stopped = threading.Event()
        self.lock = threading.Lock()
        self.query_s = 0.0

    def run(self) -> None:
        next_db = 0.0
        interval = 0.25
        while not self.stopped.is_set():
            status = read_status()
            with self.lock:
                peaks = self.peaks[self.phase]
                peaks.threads = max(peaks.threads, threading.active_count())
                peaks.os_threads = max(peaks.os_threads, status["Threads"])
                peaks.rss_kb = max(peaks.rss_kb, status["VmRSS"])
            now = time.monotonic()
            if now >= next_db:
                t0 = time.perf_counter()
                try:
                    conns, done = self.sample_db()
                except Exception as exc:  # report it; the measurement goes on
                    print(f"monitor: {exc}", file=sys.stderr)
                    conns, done = 0, self.succeeded
                self.query_s = time.perf_counter() - t0
                with self.lock:
                    peaks.pg_connections = max(peaks.pg_connections, conns)
                    self.succeeded = done
                # Polling costs the server at most about a tenth of one backend.
                interval = max(0.1, 10 * self.query_s) if self.count_success else 0.25
                next_db = now + interval
            time.sleep(0.02)

    def sample_db(self) -> tuple[int, int]:
        row = self.conn.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
        conns = int(row[0]) if row else 0
        done = self.succeeded
        if self.count_success:
            done = success_count(self.conn, self.tag)
        return conns, done

    def set_phase(self, phase: str) -> None:
        with self.lock:
            self.phase = phase

    def stop(self) -> None:
        self.stopped.set()
        self.join()


def success_count(conn: Any, tag: str) -> int:
    row = conn.execute(
        "SELECT count(*) FROM dbos.workflow_status "
        "WHERE status = 'SUCCESS' AND application_version = %s",
        (tag,),
    ).fetchone()
    return int(row[0]) if row else 0


def run_summary(conn: Any, tag: str) -> tuple[dict[str, int], float | None, float | None]:
    """The run's workflows by status, and the first and last time (epoch s) one became
    SUCCESS."""
    statuses = {
        str(s): int(c)
        for s, c in conn.execute(
            "SELECT status, count(*) FROM dbos.workflow_status "
            "WHERE application_version = %s GROUP BY status",
            (tag,),
        ).fetchall()
    }
    row = conn.execute(
        "SELECT min(updated_at), max(updated_at) FROM dbos.workflow_status "
        "WHERE status = 'SUCCESS' AND application_version = %s",
        (tag,),
    ).fetchone()
    first = float(row[0]) / 1000 if row and row[0] is not None else None
    last = float(row[1]) / 1000 if row and row[1] is not None else None
    return statuses, first, last


class Progress:
    """Counts the steps run in this process (a step runs once; a replay returns its record),
    and the least time any sleeper had left before T when its step ran."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.count = 0
        self.least_left = float("inf")
        self.late = 0

    def note(self, left: float) -> None:
        with self.lock:
            self.count += 1
            self.least_left = min(self.least_left, left)
            if left < 0:
                self.late += 1


SENDER = """
import json, sys, threading, time
system, url, prefix = sys.argv[1], sys.argv[2], sys.argv[3]
n, procs, k, threads = (int(a) for a in sys.argv[4:8])
if system == "ours":
    from runtime import DBOSClient
    client = DBOSClient(url)
else:
    from dbos import DBOSClient
    client = DBOSClient(system_database_url=url)
go = threading.Barrier(threads + 1)
def send(j):
    go.wait()
    for i in range(k + j * procs, n, procs * threads):
        client.send(f"{prefix}-{i}", i, topic="wake")
pool = [threading.Thread(target=send, args=(j,)) for j in range(threads)]
for t in pool:
    t.start()
print("READY", flush=True)
sys.stdin.readline()
first = time.time()
go.wait()
for t in pool:
    t.join()
last = time.time()
print(json.dumps({"first_send": first, "last_send": last}), flush=True)
client.destroy()
"""


def send_all(system: str, url: str, tag: str, n: int, timeout: float) -> tuple[float, float]:
    """Send one message to each of the ``n`` workflows from ``SENDER_PROCESSES`` other
    processes, released together once all are ready; (first send, last send), epoch s."""
    cmd = [sys.executable, "-c", SENDER, system, url, tag, str(n), str(SENDER_PROCESSES)]
    senders = [
        subprocess.Popen(
            [*cmd, str(k), str(SENDER_THREADS)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=tempfile.gettempdir(),  # not the checkout: `-c` imports from the working folder
        )
        for k in range(SENDER_PROCESSES)
    ]
    try:
        for p in senders:
            assert p.stdout is not None
            if p.stdout.readline().strip() != "READY":
                raise RuntimeError("a sender failed to start")
        for p in senders:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        reports = []
        for p in senders:
            out, _ = p.communicate(timeout=timeout)
            reports.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for p in senders:
            if p.poll() is None:
                p.kill()
    return min(r["first_send"] for r in reports), max(r["last_send"] for r in reports)


def child(opts: argparse.Namespace) -> dict[str, Any]:
    """Run one workload here and return its measurements."""
    ours = opts.system == "ours"
    lib: Any = importlib.import_module("runtime" if ours else "dbos")
    # Typed as ours: DBOS Transact's class has the same API (that is this runtime's contract).
    dbos: type[DBOS] = lib.DBOS
    tag = opts.tag
    config: dict[str, Any] = {"name": "parked", "application_version": tag}
    if ours:
        config.update(database_url=opts.url, max_executor_threads=MAX_EXECUTOR_THREADS)
    else:
        config.update(system_database_url=opts.url)  # its default executor: no thread limit
    progress = Progress()

    @dbos.step()
    def seconds_until(t: float) -> float:
        left = t - time.time()
        progress.note(left)
        return max(0.0, left)

    @dbos.workflow()
    def parked_sleeper(t: float) -> None:
        dbos.sleep(seconds_until(t))

    @dbos.step()
    def ready() -> None:
        progress.note(0.0)

    @dbos.workflow()
    def parked_receiver() -> Any:
        ready()
        return dbos.recv(TOPIC, timeout_seconds=600)

    dbos(config=config)  # type: ignore[arg-type]  # the peer takes other keys
    dbos.launch()
    n = opts.n
    monitor = Monitor(opts.url, tag)
    monitor.start()
    out: dict[str, Any] = {"system": opts.system, "workload": opts.workload, "n": n}
    out["max_executor_threads"] = MAX_EXECUTOR_THREADS if ours else None
    budget = max(60.0, n / 50)  # for the workflows to reach their wait, and to finish
    t_wall = time.time()
    wake_at = t_wall + MARGIN_S + n / opts.rate_guess
    tenth = max(1, n // 10)
    marks: list[float] = []
    cpu0, t0 = time.process_time(), time.perf_counter()
    for i in range(n):
        if opts.workload == "sleepers":
            dbos.start_workflow(parked_sleeper, wake_at)
        else:
            with lib.SetWorkflowID(f"{tag}-{i}"):
                dbos.start_workflow(parked_receiver)
        if (i + 1) % tenth == 0:
            marks.append(time.perf_counter())
    start_s = time.perf_counter() - t0
    # This process's CPU (all its threads) per start, while starting: near 1 s per second of
    # wall time means the starts are bound by Python (one core's worth, the GIL).
    out["start_cpu_ms_per_wf"] = (time.process_time() - cpu0) / n * 1000
    out["start_cpu_share"] = (time.process_time() - cpu0) / start_s
    # The start rate over each tenth of the starts (does it drift as the waiting ones pile up?).
    out["start_rate_by_tenth"] = [
        round(tenth / (b - a)) for a, b in zip([t0, *marks], marks, strict=False)
    ]
    out["start_s"] = start_s
    out["start_rate_wps"] = n / start_s
    monitor.set_phase("parked")
    # Until every workflow has run its step (and so reached its wait, or is about to).
    reach_by = wake_at if opts.workload == "sleepers" else time.time() + budget
    while progress.count < n and time.time() < reach_by:
        time.sleep(0.05)
    out["reached_wait_s"] = time.perf_counter() - t0 if progress.count >= n else None
    out["steps_run"] = progress.count
    if opts.workload == "sleepers":
        out["wake_in_s"] = wake_at - t_wall
        out["slack_s"] = progress.least_left  # < 0: some step ran after T
        out["late_steps"] = progress.late
        time.sleep(max(0.0, wake_at - time.time()))
    else:
        time.sleep(SETTLE_S)
    with monitor.lock:
        parked = monitor.peaks["parked"]
        out["threads_parked"] = parked.threads
        out["rss_parked_mb"] = parked.rss_kb / 1024
        out["pg_connections_parked"] = parked.pg_connections
    monitor.count_success = True
    monitor.set_phase("wake")
    begin = wake_at
    sends: list[tuple[float, float]] = []
    failures: list[BaseException] = []
    if opts.workload == "recv":

        def sending() -> None:
            try:
                sends.append(send_all(opts.system, opts.url, tag, n, budget))
            except BaseException as exc:
                failures.append(exc)

        sender = threading.Thread(target=sending, name="parked-send", daemon=True)
        sender.start()
        begin = time.time()  # replaced by the first send's time below
    deadline = time.time() + budget
    cpu_wake = time.process_time()
    while monitor.succeeded < n and time.time() < deadline and not failures:
        time.sleep(0.02)
    observed = time.time()
    # This process's CPU per workflow from the wake-up to the end (its waits re-run, finished).
    out["wake_cpu_ms_per_wf"] = (time.process_time() - cpu_wake) / n * 1000
    out["budget_s"] = budget
    out["succeeded_in_budget"] = monitor.succeeded
    if opts.workload == "recv":
        sender.join(timeout=max(1.0, deadline - time.time()))
        if sends:
            begin, last_send = sends[0]
            out["send_s"] = last_send - begin
            out["sender"] = f"{SENDER_PROCESSES} processes x {SENDER_THREADS} threads"
        else:
            out["sender_error"] = repr(failures[0]) if failures else "the senders did not finish"
    monitor.stop()
    statuses, first, last = run_summary(monitor.conn, tag)
    out["statuses"] = statuses
    out["done"] = statuses.get("SUCCESS", 0) == n
    out["done_observed_s"] = observed - begin
    if out["done"] and last is not None:
        out["wake_to_done_s"] = last - begin
        out["finish_rate_wps"] = n / max(last - begin, 1e-3)
        out["first_done_s"] = (first or last) - begin
        if "send_s" in out:  # how far the wake-ups trailed the sends
            out["after_last_send_s"] = last - begin - out["send_s"]
    hwm = read_status()["VmHWM"]
    peaks = monitor.peaks.values()
    out["peak_threads"] = max(p.threads for p in peaks)
    out["peak_os_threads"] = max(p.os_threads for p in peaks)
    out["peak_rss_mb"] = hwm / 1024
    out["peak_pg_connections"] = max(monitor.peaks[p].pg_connections for p in ("start", "parked"))
    if opts.workload == "sleepers":
        out["peak_pg_connections"] = max(out["peak_pg_connections"], peaks_wake(monitor))
    else:  # the senders' connections count in the wake phase
        out["peak_pg_connections_with_sender"] = peaks_wake(monitor)
    out["phases"] = {
        phase: {
            "threads": p.threads,
            "os_threads": p.os_threads,
            "rss_mb": round(p.rss_kb / 1024, 1),
            "pg_connections": p.pg_connections,
        }
        for phase, p in monitor.peaks.items()
    }
    monitor.conn.close()
    return out


def peaks_wake(monitor: Monitor) -> int:
    return monitor.peaks["wake"].pg_connections


def child_main(opts: argparse.Namespace) -> None:
    result = child(opts)
    print(json.dumps(result), flush=True)
    # Stop the runtime, but never let a slow shutdown hold the measurement.
    threading.Timer(20.0, lambda: os._exit(0)).start()
    try:
        lib: Any = importlib.import_module("runtime" if opts.system == "ours" else "dbos")
        lib.DBOS.destroy()
    finally:
        os._exit(0)


# -- the parent: a fresh database and a fresh process per workload ------------------------------


@dataclass
class Workload:
    name: str  # "sleepers" or "recv"
    n: int

    @property
    def key(self) -> str:
        return f"{self.name}_{self.n}"


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@contextlib.contextmanager
def fresh_database(url: str, name: str) -> Iterator[str]:
    """A new database ``name`` on ``url``'s server, dropped afterwards; ``url`` itself when it
    may not be created."""
    import psycopg

    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        print(f"parked: using {name!r} failed ({exc}); using the given database", file=sys.stderr)
        yield url
        return
    try:
        yield with_database(url, name)
    finally:
        with contextlib.suppress(psycopg.Error), psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def child_timeout(w: Workload, rate_guess: float) -> float:
    """Seconds a child may take in all before it is killed: its own budgets plus a margin."""
    budget = max(60.0, w.n / 50)
    start = MARGIN_S + w.n / rate_guess
    return start + 2 * budget + SETTLE_S + 120


def run_child(
    python: str, system: str, url: str, w: Workload, rate_guess: float, timeout: float
) -> dict[str, Any]:
    """One workload in a fresh process; its measurements, or what went wrong."""
    tag = f"parked-{w.name}-{uuid.uuid4().hex[:8]}"
    cmd = [python, str(Path(__file__).resolve()), "--child", w.name, "--system", system]
    cmd += ["--url", url, "--n", str(w.n), "--tag", tag, "--rate-guess", str(rate_guess)]
    errors = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=errors, text=True, cwd=ROOT, start_new_session=True
    )
    t0 = time.monotonic()
    try:
        stdout, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the child and its senders
        proc.communicate()
        stdout = ""
    except BaseException:  # Ctrl-C: the child is in a session of its own, so end it here
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        raise
    elapsed = time.monotonic() - t0
    errors.seek(0)
    stderr = errors.read()
    errors.close()
    lines = [ln for ln in stdout.splitlines() if ln.startswith("{")]
    result: dict[str, Any]
    if lines:
        result = dict(json.loads(lines[-1]))
    elif elapsed >= timeout:
        result = {"n": w.n, "error": f"killed after the {timeout:.0f} s timeout"}
    else:
        result = {"n": w.n, "error": f"exited with {proc.returncode}"}
    result["process_s"] = elapsed
    notable = [
        ln.strip()
        for ln in stderr.splitlines()
        if any(word in ln for word in ("WARNING", "ERROR", "Traceback", "Error", "exhausted"))
    ]
    result["log_warnings"] = len(notable)
    result["log_sample"] = list(dict.fromkeys(notable))[:5]
    if "error" in result:
        result["stderr_tail"] = stderr[-2000:]
    return result


def measure(
    system: str,
    url: str,
    n: int,
    *,
    python: str | None = None,
    big: bool = False,
    timeout: float | None = None,
    workloads: list[str] | None = None,
) -> dict[str, Any]:
    """Run the workloads of ``system`` on ``url``'s server, each in a fresh database and a fresh
    process; ``timeout`` (seconds) caps each child (default: from its own budgets)."""
    python = python or (sys.executable if system == "ours" else str(PEER_PYTHON))
    chosen = workloads or ["sleepers", "recv"]
    plan = [Workload(name, n) for name in chosen]
    if big and system == "ours" and "sleepers" in chosen:
        plan.insert(chosen.index("sleepers") + 1, Workload("sleepers", 100_000))
    rate = START_RATE_GUESS[system]
    out: dict[str, Any] = {"system": system, "n": n, "workloads": {}}
    for w in plan:
        limit = timeout if timeout is not None else child_timeout(w, rate)
        with fresh_database(url, f"parked_{system}_{w.key}") as db:
            result = run_child(python, system, db, w, rate, limit)
        result["timeout_s"] = limit
        out["workloads"][w.key] = result
        print(f"parked: {system} {w.key}: {summary_line(result)}", file=sys.stderr, flush=True)
    return out


def summary_line(r: dict[str, Any]) -> str:
    if "error" in r:
        return str(r["error"])
    parts = [f"start {r['start_rate_wps']:.0f} wf/s", f"threads {r['peak_threads']}"]
    parts += [f"RSS {r['peak_rss_mb']:.0f} MB", f"pg conns {r['peak_pg_connections']}"]
    if r.get("wake_to_done_s") is not None:
        parts.append(f"done in {r['wake_to_done_s']:.2f} s ({r['finish_rate_wps']:.0f} wf/s)")
    else:
        parts.append(f"NOT done: {r.get('statuses')}")
    return ", ".join(parts)


# -- the table ----------------------------------------------------------------------------------


def _n(value: int) -> str:
    return f"{value:,}"


def _s(value: float) -> str:
    return f"{value:.2f} s" if value < 100 else f"{value:.0f} s"


def _rate(value: float) -> str:
    return f"{value:,.0f} wf/s"


def _verdict(goal: str, met: bool) -> str:
    return f"{goal}: {'met' if met else 'NOT met'}"


def rows_of(key: str, r: dict[str, Any], system: str) -> list[tuple[str, str, str]]:
    """(measure, cell, target) rows of one workload's result."""
    name, _, size = key.partition("_")
    n = int(size)
    if "error" in r:
        return [("result", f"{r['error']} (N = {_n(int(r.get('n', n)))})", "")]
    ours = system == "ours"
    out: list[tuple[str, str, str]] = []
    rate = float(r["start_rate_wps"])
    start_goal = ""
    if ours and n >= 10_000:
        start_goal = _verdict(f">= {RATE_TARGET:,.0f} wf/s", rate >= RATE_TARGET)
    out.append(("start all (`start_workflow`)", f"{_s(r['start_s'])}, {_rate(rate)}", start_goal))
    bound = MAX_EXECUTOR_THREADS + THREAD_ALLOWANCE
    threads = int(r["peak_threads"])
    thread_goal = _verdict(f"<= {MAX_EXECUTOR_THREADS} + {THREAD_ALLOWANCE}", threads <= bound)
    out.append(
        (
            "peak threads: `active_count()` (OS); while waiting",
            f"{_n(threads)} ({_n(r['peak_os_threads'])}); {_n(r['threads_parked'])}",
            thread_goal if ours else "",
        )
    )
    rss = float(r["peak_rss_mb"])
    rss_goal = ""
    if ours and name == "sleepers" and n >= 100_000:
        rss_goal = _verdict(f"< {RSS_TARGET_MB / 1024:g} GB", rss < RSS_TARGET_MB)
    out.append(
        (
            "peak RSS (VmHWM); while waiting",
            f"{rss:,.0f} MB; {r['rss_parked_mb']:,.0f} MB",
            rss_goal,
        )
    )
    conns = f"{r['peak_pg_connections']}"
    if "peak_pg_connections_with_sender" in r:
        conns += f" ({r['peak_pg_connections_with_sender']} with the sender)"
    out.append(("peak Postgres connections", conns, ""))
    what = "T to all SUCCESS" if name == "sleepers" else "first send to all SUCCESS"
    if r.get("wake_to_done_s") is not None:
        finish = float(r["finish_rate_wps"])
        goal = ""
        if ours and n >= 10_000 and (name == "recv" or n == 10_000):
            goal = _verdict(f">= {RATE_TARGET:,.0f} wf/s", finish >= RATE_TARGET)
        cell = f"{_s(r['wake_to_done_s'])}, {_rate(finish)}"
        if name == "recv" and "send_s" in r:
            cell += f" (the sends took {_s(r['send_s'])}"
            cell += f"; last send to all SUCCESS: {_s(r['after_last_send_s'])})"
        out.append((what, cell, goal))
    else:
        done = int(r.get("statuses", {}).get("SUCCESS", 0))
        after = float(r.get("done_observed_s", 0.0))
        cell = f"not done: {_n(done)} of {_n(n)} SUCCESS after {_s(after)}"
        if name == "recv" and "send_s" in r:
            cell += f" (the sends took {_s(r['send_s'])})"
        out.append((what, cell, ""))
    if r.get("log_warnings"):
        sample = str(r["log_sample"][0]) if r.get("log_sample") else ""
        sample = sample.split(") ", 1)[-1][:90].replace("|", "/")
        out.append(("warnings logged", f'{_n(int(r["log_warnings"]))}, e.g. "{sample}"', ""))
    if name == "sleepers" and float(r.get("slack_s", 0.0)) < 0:
        out.append(("steps run after T (late starts)", _n(int(r.get("late_steps", 0))), ""))
    return out


def render(ours: dict[str, Any], peer: dict[str, Any] | None = None, note: str = "") -> str:
    """Markdown: one table, a block of rows per workload (and ``note`` below it)."""
    head = ["| workload | measure | ours |"]
    rule = ["|---|---|---|"]
    if peer is not None:
        head[0] += " DBOS Transact |"
        rule[0] += "---|"
    head[0] += " target |"
    rule[0] += "---|"
    lines = [
        "Each workload runs in a fresh process on a fresh database. Ours: "
        f"`max_executor_threads` = {MAX_EXECUTOR_THREADS}, a wait longer than about 1 s gives "
        "its thread back. DBOS Transact: its default executor (no thread limit; each waiting "
        "workflow holds a thread). Threads: `threading.active_count()` (this includes the main "
        "thread and the benchmark's monitor thread), in parentheses the OS count; RSS: VmHWM of "
        "the process; connections: `pg_stat_activity` of the database; done: the last "
        "`updated_at` of the run's SUCCESS rows. recv: a second process sends one message to "
        f"each waiting workflow (`DBOSClient`, {_n(SENDER_PROCESSES)} "
        f"process{'es' if SENDER_PROCESSES > 1 else ''} of {SENDER_THREADS} threads). A "
        "workload that is not done within its budget (N / 50 s, at least 60 s) is reported as "
        "such.",
        "",
        *head,
        *rule,
    ]
    # Pairs (ours, peer) of the same workload; the peer may run a smaller N, and no 100k.
    mine: dict[str, Any] = ours.get("workloads", {})
    theirs: dict[str, Any] = (peer or {}).get("workloads", {})
    pairs: list[tuple[str | None, str | None]] = []
    for key in mine:
        name, _, size = key.partition("_")
        match = f"{name}_{peer['n']}" if peer is not None and int(size) == ours["n"] else None
        pairs.append((key, match if match in theirs else None))
    paired = {b for _, b in pairs}
    pairs += [(None, key) for key in theirs if key not in paired]
    for key_a, key_b in pairs:
        a = mine.get(key_a) if key_a else None
        b = theirs.get(key_b) if key_b else None
        name, _, size = (key_a or key_b or "").partition("_")
        label = f"{'sleepers' if name == 'sleepers' else 'recv wake'}, N = {_n(int(size))}"
        if key_a and key_b and key_a != key_b:
            label += f" (DBOS Transact: N = {_n(int(key_b.partition('_')[2]))})"
        rows_a = rows_of(key_a, a, "ours") if key_a and a else []
        rows_b = rows_of(key_b, b, "peer") if key_b and b else []
        measures = [m for m, _, _ in rows_a] + [m for m, _, _ in rows_b]
        for m in dict.fromkeys(measures):
            cell_a = next((c for mm, c, _ in rows_a if mm == m), "")
            goal = next((g for mm, _, g in rows_a if mm == m), "")
            line = f"| {label} | {m} | {cell_a} |"
            if peer is not None:
                cell_b = next((c for mm, c, _ in rows_b if mm == m), "")
                line += f" {cell_b or ('' if rows_b else 'not run')} |"
            lines.append(line + f" {goal} |")
    if note:
        lines += ["", note]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--system", choices=["ours", "peer"], default="ours")
    parser.add_argument("--url", help="a Postgres server (default: an embedded one, temporary)")
    parser.add_argument("--n", type=int, default=10_000, help="workflows per workload")
    parser.add_argument("--big", action="store_true", help="also 100,000 sleepers (ours only)")
    parser.add_argument("--python", help="the interpreter of the children (default: by system)")
    parser.add_argument("--timeout", type=float, help="seconds per child (default: from N)")
    parser.add_argument(
        "--workload", action="append", choices=["sleepers", "recv"], help="(default: both)"
    )
    parser.add_argument("--markdown", type=Path, help="also write the table here")
    parser.add_argument("--json", type=Path, help="also write the JSON here")
    # The child's own arguments.
    parser.add_argument("--child", choices=["sleepers", "recv"], help=argparse.SUPPRESS)
    parser.add_argument("--tag", help=argparse.SUPPRESS)
    parser.add_argument("--rate-guess", type=float, default=400.0, help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.child:
        opts.workload = opts.child
        child_main(opts)
        return
    server: Any = None
    url = opts.url
    base_dir = Path(tempfile.mkdtemp(prefix="dbos-parked-"))
    if url is None:
        from runtime.embedded import EmbeddedPostgres

        server = EmbeddedPostgres(base_dir, settings={"max_connections": "300"})
        url = server.start()
    try:
        result = measure(
            opts.system,
            url,
            opts.n,
            python=opts.python,
            big=opts.big,
            timeout=opts.timeout,
            workloads=opts.workload,
        )
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(base_dir, ignore_errors=True)
    text = json.dumps(result, indent=2)
    if opts.json:
        opts.json.write_text(text + "\n")
    if opts.markdown:
        title = "# Parked waits: many workflows blocked in durable waits in one process\n\n"
        opts.markdown.write_text(title + render(result) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
