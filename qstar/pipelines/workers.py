"""Searches sharded over Ray actors: `--workers N` (a local Ray with N workers) and `--ray ADDRESS` (a running
cluster). Each worker loads its own replica of the models from a `Replica` and runs `run_search` on one shard of
problems at a time; the driver hands the next shard to whichever worker is free and puts the trees back in the
problems' order. Every problem is seeded from the run seed and its own id (`run_search(seed=...)`), so the trees
are those of the single-process run whatever the number of workers or the order shards finish in.

Faults: a worker process that dies is restarted by Ray, which runs its unfinished shard again (`max_restarts`,
`max_task_retries`); the shard's trees replace nothing, since each shard's result is taken once. A worker whose
models fail to load is reported by number with the reason.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import sys
from collections.abc import Callable

from qstar.errors import QstarError
from qstar.pipelines.replica import Replica
from qstar.search import Search, run_search
from qstar.types import Problem, Tree

RESTARTS = 3  # times Ray restarts a dead worker, and retries the shard it was running
CONNECT_TIMEOUT = 3.0  # seconds to reach a cluster's address before giving up


class SearchWorker:
    """One worker: its own task, policy and scorer, loaded once; `search` runs a shard of problems."""

    def __init__(self, replica: Replica):
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        self.error = ""
        try:
            self.task, self.policy, self.scorer = replica.load()
        except Exception as e:  # reported by `ready`, so the driver can name this worker and stop
            self.error = f"{type(e).__name__}: {e}" if not isinstance(e, QstarError) else str(e)

    def ready(self) -> str:
        """Why this worker's models failed to load ("" when they loaded)."""
        return self.error

    def pid(self) -> int:
        return os.getpid()

    def search(
        self, search: Search, problems: list[Problem], budget: int | None, seed: int, batch_size: int
    ) -> list[Tree]:
        self.policy.seed(seed)  # as the single-process run does before its problems
        return run_search(search, problems, self.task, self.policy, self.scorer, budget, batch_size, seed=seed)


def import_ray():
    try:
        import ray
    except ImportError:
        raise QstarError("--workers and --ray need Ray: pip install -e '.[ray]'") from None
    return ray


def check_address(address: str) -> None:
    """Fail within seconds on an address where no Ray cluster answers (`ray.init` retries for 20 s and more)."""
    if address == "auto":
        return
    target = address.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise QstarError(f"--ray expects auto or HOST:PORT (or ray://HOST:PORT), not {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT).close()
    except OSError as e:
        raise QstarError(f"cannot reach the Ray cluster at {address}: {e.strerror or e}") from None
    if address.startswith("ray://"):
        return  # a Ray Client server, not the cluster's GCS: ray.init checks it
    try:  # something answers: ask it for its cluster id, as ray.init does first, once
        from ray._raylet import InnerGcsClient
    except ImportError:
        return
    with quiet_stderr():  # Ray's C++ client logs each failed try on stderr
        try:
            InnerGcsClient.standalone(target, None, int(CONNECT_TIMEOUT * 1000))
        except Exception as e:
            raise QstarError(f"no Ray cluster answers at {address}: {e}") from None


@contextlib.contextmanager
def quiet_stderr():
    """Send file descriptor 2 (where C++ libraries log) to /dev/null for the duration."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class Workers:
    """A pool of `SearchWorker` actors. `count` None: one per GPU of a cluster (`address`), else one per CPU; on
    this machine (no `address`) a local Ray is started with `count` workers, one CPU each."""

    def __init__(self, replica: Replica, count: int | None = None, address: str | None = None, batch_size: int = 64):
        if count is not None and count < 1:
            raise QstarError(f"--workers must be at least 1, not {count}")
        ray = self.ray = import_ray()
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a local cluster needs no token file
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        if address is not None:
            check_address(address)
        self.started = not ray.is_initialized()
        if self.started:
            try:
                ray.init(
                    address=address,
                    num_cpus=None if address else count or 1,
                    include_dashboard=False,
                    logging_level=logging.ERROR,
                    runtime_env={"env_vars": {"TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}},
                )
            except ConnectionError as e:
                if address != "auto":
                    raise QstarError(f"no Ray cluster at {address}: {e}") from None
                raise QstarError(  # Ray's own hint names its command line's --address flag, not qstar's
                    "--ray found no Ray cluster on this machine (nor RAY_ADDRESS): start one with `ray start --head`, "
                    "give --ray HOST:PORT, or use --workers N alone for workers on this machine"
                ) from None
        resources = ray.cluster_resources()
        gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 1))
        self.count = count or gpus or cpus
        if self.count > cpus:  # each worker takes a CPU: more would wait for one forever
            self.close()
            raise QstarError(f"the Ray cluster has {cpus} CPUs; {self.count} workers need one each")
        self.batch_size = batch_size
        for name, module in list(sys.modules.items()):
            if name.startswith("qstar_plugin_"):  # --plugin files are not importable in a worker: send them whole
                ray.cloudpickle.register_pickle_by_value(module)
        actor = ray.remote(SearchWorker).options(
            num_cpus=1,
            num_gpus=min(1.0, gpus / self.count) if gpus else 0,
            max_restarts=RESTARTS,
            max_task_retries=RESTARTS,
        )
        self.actors = [actor.remote(replica) for _ in range(self.count)]
        errors = ray.get([a.ready.remote() for a in self.actors])
        for i, error in enumerate(errors):
            if error:
                self.close()
                raise QstarError(f"worker {i} could not load its models: {error}")

    def search(
        self,
        search: Search,
        problems: list[Problem],
        budget: int | None = None,
        seed: int = 0,
        on_tree: Callable[[Tree], None] | None = None,
    ) -> list[Tree]:
        """`run_search` over the workers (Ray's `ActorPool`: each shard to the next free worker): shards of at most
        `batch_size` problems (fewer, so every worker gets one), the trees in the problems' order."""
        ray = self.ray
        size = max(1, min(self.batch_size, math.ceil(len(problems) / self.count)))
        shards = [problems[start : start + size] for start in range(0, len(problems), size)]
        pool = ray.util.ActorPool(self.actors)
        run = lambda actor, shard: actor.search.remote(search, shard, budget, seed, self.batch_size)  # noqa: E731
        trees: list[Tree] = []
        try:
            for shard in pool.map(run, shards):  # in the shards' order
                trees += shard
                if on_tree:
                    for tree in shard:
                        on_tree(tree)
        except ray.exceptions.RayTaskError as e:  # the search itself raised: the same error as in one process
            raise QstarError(f"a worker's search failed: {getattr(e, 'cause', e)}") from None
        except ray.exceptions.RayActorError as e:
            raise QstarError(f"a worker died {RESTARTS + 1} times: {e}") from None
        return trees

    def pids(self) -> list[int]:
        """The workers' process ids (the fault test kills one)."""
        return self.ray.get([a.pid.remote() for a in self.actors])

    def close(self) -> None:
        for a in self.actors if hasattr(self, "actors") else []:
            self.ray.kill(a)
        if self.started:
            self.ray.shutdown()

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
