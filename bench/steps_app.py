"""The 3-step workload of our own bench scripts, on this project's runtime: a workflow of ``n``
trivial steps, and a driver that spreads calls over threads. Imported by bench/profile_hot_path.py
and by the workload sources that bench/ab.py and bench/queue_drain.py run in child processes
(there the checkout under test comes first on PYTHONPATH, so ``runtime`` is that checkout's).
bench/workloads.py keeps its own copy: it runs DBOS Transact's package as well as ours."""

from __future__ import annotations

import threading
from collections.abc import Callable

from runtime import DBOS


@DBOS.step()
def trivial(i: int) -> int:
    return i


@DBOS.workflow()
def steps_wf(n: int) -> int:
    return sum(trivial(i) for i in range(n))


def on_threads(total: int, threads: int, call: Callable[[], object]) -> None:
    """Call ``call`` ``total`` times in all from ``threads`` threads (each takes the next call
    as it finishes one); return when every call has returned."""
    left = iter(range(total))
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                if next(left, None) is None:
                    return
            call()

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
