"""Fan a batch job's suspects out over Ray: a pool of actors, each with its own engine.

`ray.init()` starts a local Ray by default; `RAY_ADDRESS` or `--ray ADDRESS` attaches to a
cluster. Each actor opens `Lineage(home)` once (so the registered models load once per actor,
not once per suspect) and asks for one GPU when the cluster has GPUs. On a cluster, every node
needs lineage installed and the home directory mounted at the same path (the actors read the
registered models from it and store their scans in it).

The driver (the `lineage batch run` process) claims an item when it submits it and records the
outcome when the actor returns; the actor stores the scan under the item's deterministic
request id, so a driver killed between the two never produces a second result.

Caveats handled here: Ray's driver installs its own SIGTERM handler, which we replace with one
that raises SystemExit, so a Kubernetes deadline still runs `ray.shutdown()`; and the driver is
a plain process (never the gRPC server's), so gRPC's fork restrictions do not apply. A local
Ray whose driver dies of SIGKILL leaves Ray's per-node agents behind (`ray stop` ends them);
the job itself resumes like any other.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from lineage.batch.jobs import Item, Job, JobStore
from lineage.batch.runner import ProgressFn, crash_point, record
from lineage.errors import LineageError

__all__ = ["RayExecutor"]


class _ScanWorker:
    """A Ray actor: one engine on one home; scans one item at a time."""

    def __init__(self, home: str, threads: int) -> None:
        import torch

        torch.set_num_threads(threads)
        from lineage.engine import Lineage

        self.engine = Lineage(home)

    def scan(self, job_id: str, item: Item, alpha: float) -> dict[str, Any]:
        from lineage.batch.runner import scan_item

        return scan_item(self.engine, job_id, item, alpha)


class RayExecutor:
    """Run items on a pool of Ray actors.

    address: None starts (or joins, via RAY_ADDRESS) Ray; "local" always starts a local one.
    num_cpus: CPUs of a local Ray (None: Ray's default). actors: pool size (None: as many as
    the cluster has CPUs (or GPUs, when it has them), at most one per item).
    """

    def __init__(self, address: str | None = None, *, num_cpus: int | None = None,
                 actors: int | None = None, threads_per_actor: int = 1) -> None:
        self.address = address
        self.num_cpus = num_cpus
        self.actors = actors
        self.threads = threads_per_actor

    def _init(self) -> Any:
        try:
            import ray
        except ImportError as e:  # pragma: no cover - ray is a dependency
            raise LineageError(f"--ray needs the 'ray' package: {e}") from None
        address = self.address or os.environ.get("RAY_ADDRESS") or None
        local = address in (None, "local")
        kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True,
                              "configure_logging": False}
        if local:
            kw["num_cpus"] = self.num_cpus
            # local workers must import this lineage, wherever it lives
            root = str(Path(__file__).resolve().parents[2])
            pp = os.environ.get("PYTHONPATH", "")
            if root not in pp.split(os.pathsep):
                os.environ["PYTHONPATH"] = os.pathsep.join(x for x in (root, pp) if x)
            address = "local"
        try:
            ray.init(address=address, **kw)
        except Exception as e:  # noqa: BLE001 - ConnectionError, RuntimeError, ...
            raise LineageError(f"cannot start or reach Ray at {address}: {e}") from None
        if threading.current_thread() is threading.main_thread():
            # Ray's driver SIGTERM handler exits without unwinding; unwind instead
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        return ray

    def run(self, home: Path, job: Job, jobs: JobStore, progress: ProgressFn) -> None:
        main = threading.current_thread() is threading.main_thread()
        before = signal.getsignal(signal.SIGTERM) if main else None
        ray = self._init()
        try:
            self._run(ray, home, job, jobs, progress)
        finally:
            ray.shutdown()
            if main:
                signal.signal(signal.SIGTERM, before or signal.SIG_DFL)

    def _run(self, ray: Any, home: Path, job: Job, jobs: JobStore,
             progress: ProgressFn) -> None:
        todo = jobs.items(job.id, states=("pending",))
        if not todo:
            return
        res = ray.cluster_resources()
        gpus = int(res.get("GPU", 0))
        n = self.actors or max(1, gpus or int(res.get("CPU", 1)) // self.threads)
        n = min(n, len(todo))
        actor_cls = ray.remote(num_cpus=self.threads, num_gpus=1 if gpus else 0,
                               max_restarts=0)(_ScanWorker)
        pool = [actor_cls.remote(str(home), self.threads) for _ in range(n)]
        free = list(pool)
        running: dict[Any, tuple[Any, Item]] = {}
        queue: list[Item] = list(todo)
        try:
            while queue or running:
                cancel = jobs.get(job.id).cancel_requested
                while queue and free and not cancel:
                    item = queue.pop(0)
                    if not jobs.claim(job.id, item.idx):
                        continue
                    crash_point("claimed")
                    actor = free.pop()
                    ref = actor.scan.remote(job.id, item, job.manifest.alpha)
                    running[ref] = (actor, item)
                    progress(jobs.get(job.id), item)
                if not running:
                    break
                ready, _ = ray.wait(list(running), num_returns=1, timeout=2.0)
                for ref in ready:
                    actor, item = running.pop(ref)
                    try:
                        out = ray.get(ref)
                    except Exception as e:  # noqa: BLE001 - the actor died
                        out = {"error": "WORKER_FAILED", "message": f"{type(e).__name__}: {e}"}
                        actor = actor_cls.remote(str(home), self.threads)
                    record(jobs, job.id, item.idx, out)
                    free.append(actor)
                    progress(jobs.get(job.id), None)
                if cancel and running:  # actor tasks cannot be force-cancelled: kill them
                    for _, (actor, item) in list(running.items()):
                        ray.kill(actor)
                        jobs.release(job.id, item.idx)
                    running.clear()
        finally:
            for _, item in running.values():
                jobs.release(job.id, item.idx)
            for a in pool:
                ray.kill(a)
