"""The ``ray`` executor: shards of the image list run on Ray actors, merged into one folder.

``run_attribute``/``run_evaluate`` (:mod:`tfxai.run`) dispatch here with ``executor="ray"`` (the driver;
the actors are :class:`tfxai.executors.worker.ShardWorker`):

1. the driver lists the images (``--shard``/``--limit`` applied) and splits them round-robin
   into ``SHARDS_PER_WORKER × workers`` deterministic shards (the list is sorted by image id);
2. the models run one after the other over all actors; an actor loads the model once (with
   its attributers and their compiled functions) and runs the normal local pipeline
   (:func:`tfxai.pipeline.local.run_local`) on one shard at a time, into its own folder
   ``<out>/.shards/<run>/m<model>/shard-<j>`` that resumes from ``<out>`` itself (what is
   already there is skipped);
3. when a shard is done the driver merges its folder into ``<out>``
   (:func:`tfxai.results.merge_results`: attribution parts copied under a temporary name and
   renamed, CSV rows deduplicated by key and appended with the crash-safe append) and deletes it.

Randomness is derived per image (``Sample.seed_key``), so a Ray run gives the same values as a
local one with the same seed. A worker that dies (killed, out of memory) is restarted by Ray
(``max_restarts``) and its shard re-run (``max_task_retries``; then our own retries on a new
actor): the re-run resumes from the shard folder. Shard folders left by a killed driver are
merged at the start of the next run. Metrics that need a dataset pass get statistics combined
over all shards before scoring.

Workers read the images and write ``<out>`` by path: on a multi-machine cluster both must be on
a shared filesystem (see docs/scaling.md).

``TFXAI_TEST_FAULT_DIR`` is a test hook: a worker finding ``<dir>/kill-shard-<j>`` renames it
(so it fires once) and exits hard after writing the first batch of shard ``j``.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import shutil
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tfxai.data.dataset import Sample
from tfxai.executors.worker import ShardWorker
from tfxai.pipeline.config import ConfigError, RunConfig, RunSummary
from tfxai.pipeline.preflight import load_samples
from tfxai.pipeline.session import build_metrics, progress_bar, sigint_guard
from tfxai.results import ResultsDir, ResultsMerger

__all__ = ["run_ray", "partition", "ExecutorError", "SHARD_DIR", "SHARDS_PER_WORKER",
           "MAX_RETRIES"]

SHARD_DIR = ".shards"
SHARDS_PER_WORKER = 4
MAX_RETRIES = 3


class ExecutorError(RuntimeError):
    """A shard failed for good (its worker kept dying, or it raised an unexpected error)."""


def partition(samples: list[Sample], count: int) -> list[list[Sample]]:
    """``count`` round-robin shards of ``samples`` (empty shards dropped)."""
    return [part for part in (samples[j::count] for j in range(count)) if part]


def _absolute(cfg: RunConfig, samples: list[Sample]) -> tuple[RunConfig, list[Sample]]:
    """Absolute paths for the workers, whose working directory may differ from ours."""

    from tfxai.models import MODELS

    def fix(value: Any) -> Any:
        if not isinstance(value, (str, Path)) or str(value) in MODELS or \
                str(value) in ("imagenet", "none") or not Path(value).exists():
            return value
        return str(Path(value).resolve())

    cfg = dataclasses.replace(cfg, models=[fix(m) for m in cfg.models], weights=fix(cfg.weights),
                              out=Path(cfg.out).resolve())
    samples = [dataclasses.replace(
        s, path=Path(s.path).resolve(),
        annotation_path=None if s.annotation_path is None else Path(s.annotation_path).resolve())
        for s in samples]
    return cfg, samples


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(
            "{opt:executor} ray needs Ray, an optional extra: pip install 'tfxai[ray]' "
            f"(import failed: {exc})") from exc
    return ray


# --------------------------------------------------------------------------------------- driver


def _init_ray(ray: Any, cfg: RunConfig) -> bool:
    """Connect to (``address``) or start a local Ray cluster; True when we started it."""
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                              "configure_logging": False}
    if ray.is_initialized():  # the caller's Ray session (e.g. a notebook or a test)
        return False
    try:
        if cfg.address:
            ray.init(address=cfg.address, **kwargs)
        else:
            ncpu = (cfg.num_workers * cfg.worker_cpus) if cfg.num_workers else os.cpu_count()
            ray.init(num_cpus=ncpu, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = cfg.address or "a local cluster"
        raise ConfigError(f"{{opt:executor}} ray: cannot start or reach Ray at {where}: {exc}") from exc
    return True


def _probe(address: str, timeout: float = 10.0) -> None:
    """Fail fast on an unreachable ``HOST:PORT`` (Ray itself retries for minutes)."""
    import socket

    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except ValueError:
        raise ConfigError(f"{{opt:address}} {address!r}: expected auto or HOST:PORT") from None
    except OSError as exc:
        raise ConfigError(f"{{opt:address}} {address}: cannot reach a Ray cluster there ({exc}); "
                          "start one with `ray start --head` or use {opt:address} auto") from exc


def _merge_leftovers(rd: ResultsDir) -> int:
    """Merge shard folders left by an interrupted run; returns how many were merged."""
    root = rd.root / SHARD_DIR
    if not root.is_dir():
        return 0
    folders = sorted(p for p in root.glob("**/shard-*") if p.is_dir())
    merger = ResultsMerger(rd.root) if folders else None
    for folder in folders:
        merger.merge([folder])
        shutil.rmtree(folder, ignore_errors=True)
    shutil.rmtree(root, ignore_errors=True)
    return len(folders)


def _unwrap(ray: Any, exc: BaseException) -> BaseException:
    """The user-facing error inside a Ray task error (config, data, model, results errors)."""
    from tfxai.data.dataset import DatasetError
    from tfxai.models import ModelLoadError
    from tfxai.results import ResultsWriteError

    cause = getattr(exc, "cause", None)
    if isinstance(cause, (ConfigError, DatasetError, ModelLoadError, ResultsWriteError)):
        return cause
    return exc


class _Pool:
    """Actors running shards; a shard whose actor died for good is retried on a new actor."""

    def __init__(self, ray: Any, cpus: int, workers: int) -> None:
        self.ray = ray
        self.cpus = cpus
        self.remote = ray.remote(num_cpus=cpus, max_restarts=MAX_RETRIES,
                                 max_task_retries=MAX_RETRIES)(ShardWorker)
        self.actors = [self.remote.remote(cpus) for _ in range(workers)]

    def map(self, method: str, shards: list[list[Sample]], args, on_done, stop) -> bool:
        """Run ``actor.<method>(j, shards[j], *args(j))`` over all shards; True if interrupted.

        ``on_done(j, result)`` is called in the driver as each shard completes.
        """
        ray = self.ray
        queue = collections.deque(range(len(shards)))
        attempts = collections.Counter()
        pending: dict[Any, tuple[int, int]] = {}  # ref -> (actor index, shard)

        def submit(a: int) -> None:
            j = queue.popleft()
            attempts[j] += 1
            ref = getattr(self.actors[a], method).remote(j, shards[j], *args(j))
            pending[ref] = (a, j)

        for a in range(len(self.actors)):
            if queue:
                submit(a)
        while pending:
            if stop.requested:
                self._cancel(pending)
                return True
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
            for ref in ready:
                a, j = pending.pop(ref)
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayTaskError as exc:  # the shard raised
                    self._cancel(pending)
                    cause = _unwrap(ray, exc)
                    if cause is exc:
                        raise ExecutorError(f"ray: shard {j} failed: {exc}") from exc
                    raise cause from None
                except ray.exceptions.RayError as exc:  # its worker died (killed, OOM, node)
                    if attempts[j] > MAX_RETRIES:
                        self._cancel(pending)
                        raise ExecutorError(
                            f"ray: shard {j} failed {attempts[j]} times (its worker died); "
                            f"last error: {exc}") from exc
                    try:
                        ray.kill(self.actors[a])
                    except Exception:  # noqa: BLE001 - already gone
                        pass
                    self.actors[a] = self.remote.remote(self.cpus)  # a fresh actor
                    queue.appendleft(j)
                    submit(a)
                    continue
                on_done(j, result)
                if queue and not stop.requested:
                    submit(a)
        return False

    def _cancel(self, pending: dict[Any, tuple[int, int]]) -> None:
        for ref in pending:
            try:
                self.ray.cancel(ref)
            except Exception:  # noqa: BLE001 - best effort
                pass
        deadline = time.time() + 60
        refs = list(pending)
        while refs and time.time() < deadline:
            done, refs = self.ray.wait(refs, num_returns=len(refs), timeout=1.0)
        pending.clear()

    def shutdown(self) -> None:
        self.actors, actors = [], self.actors
        for actor in actors:
            try:
                self.ray.kill(actor)
            except Exception:  # noqa: BLE001
                pass


#: the warm pool kept between runs on a Ray cluster this module did not start
_POOLS: dict[tuple[str, int, int], _Pool] = {}


def _get_pool(ray: Any, cfg: RunConfig, workers: int, keep: bool) -> _Pool:
    if not keep:
        return _Pool(ray, cfg.worker_cpus, workers)
    ctx = ray.get_runtime_context()  # node ids are random per cluster; job ids restart at 1
    key = (f"{ctx.get_node_id()}:{ctx.get_job_id()}", cfg.worker_cpus, workers)
    for other in [k for k in _POOLS if k != key]:
        old = _POOLS.pop(other)  # one warm pool at a time: its actors hold CPUs
        if other[0] == key[0]:
            old.shutdown()
    if key not in _POOLS:
        _POOLS[key] = _Pool(ray, cfg.worker_cpus, workers)
    return _POOLS[key]


def _combine_stats(cfg: RunConfig, lists: dict[tuple[str, str, str], list[Any]]
                   ) -> dict[tuple[str, str, str], Any]:
    out = {}
    for (model, method, metric_name), stats in lists.items():
        metric = build_metrics(dataclasses.replace(cfg, metrics=[metric_name]), method)[
            metric_name]
        out[(model, method, metric_name)] = metric.combine_statistics(stats)
    return out


def _needs_dataset_pass(cfg: RunConfig, command: str) -> bool:
    if command != "evaluate":
        return False
    return any(m.needs_dataset_pass for m in build_metrics(cfg, "").values())


def _run_model(pool: _Pool, cfg: RunConfig, command: str, shards: list[list[Sample]],
               run_dir: Path, rd: ResultsDir, merger: ResultsMerger, summary: RunSummary, stop,
               bar) -> bool:
    """All shards of one model; each is merged into ``rd`` when done. True if interrupted."""
    folder = lambda j: str(run_dir.resolve() / f"shard-{j:04d}")  # noqa: E731
    dest = str(rd.root.resolve())
    stats = None
    if _needs_dataset_pass(cfg, command):
        lists: dict[tuple[str, str, str], list[Any]] = collections.defaultdict(list)

        def collect(j: int, res: dict[tuple[str, str, str], list[Any]]) -> None:
            for key, value in res.items():
                lists[key].extend(value)

        if pool.map("dataset_stats", shards, lambda j: (cfg, command, folder(j), dest), collect,
                    stop):
            return True
        stats = _combine_stats(cfg, lists)
        for (model, method, metric), value in stats.items():
            rd.log_run({"command": "evaluate.dataset_pass", "model": model, "method": method,
                        "metric": metric, "statistic": value, "executor": "ray"})

    def done(j: int, res: dict[str, Any]) -> None:
        merger.merge([folder(j)])
        shutil.rmtree(folder(j), ignore_errors=True)
        for name in ("computed", "skipped", "rows", "errors"):
            setattr(summary, name, getattr(summary, name) + res[name])
        summary.add_counts(res["values"], res["undefined"])
        summary.notes.extend(n for n in res["notes"] if n not in summary.notes)
        bar.update(len(shards[j]))

    return pool.map("run_shard", shards, lambda j: (cfg, command, folder(j), dest, stats), done,
                    stop)


def _run_models(pool: _Pool, cfg: RunConfig, command: str, samples: list[Sample],
                shards: list[list[Sample]], run_dir: Path, rd: ResultsDir,
                summary: RunSummary) -> None:
    """One model at a time over all actors (an actor holds one model, loaded once); stops
    after the shards in flight on SIGINT (``summary.interrupted``)."""
    merger = ResultsMerger(rd.root)
    with sigint_guard() as stop:
        for m, model in enumerate(cfg.models):
            mcfg = dataclasses.replace(cfg, models=[model])
            label = Path(str(model)).stem if Path(str(model)).suffix else str(model)
            bar = progress_bar(len(samples), f"{label} {command} (ray, {len(pool.actors)} "
                               f"workers)", cfg.progress)
            try:
                stopped = _run_model(pool, mcfg, command, shards, run_dir / f"m{m:02d}", rd,
                                     merger, summary, stop, bar)
            finally:
                bar.close()
            if stopped:
                summary.interrupted = True
                return


def run_ray(cfg: RunConfig, command: str, samples: list[Sample] | None = None,
            notes: Sequence[str] = ()) -> RunSummary:
    """``attribute`` or ``evaluate`` with the Ray executor (see the module docstring).

    ``samples``/``notes``: the images and notes of :func:`tfxai.pipeline.preflight.preflight`
    (listed here when None). Nothing is written before Ray is reached.
    """
    ray = _import_ray()
    if cfg.address and cfg.address != "auto" and "://" not in cfg.address:
        _probe(cfg.address)  # before anything is written
    rd = ResultsDir(cfg.out)
    if samples is None:
        samples = load_samples(cfg)
    rd.check_writable()
    started = _init_ray(ray, cfg)
    try:
        rd.ensure_writable()
        rd.log_run(cfg.record(command))
    except BaseException:
        if started:
            ray.shutdown()
        raise
    summary = RunSummary(images=len(samples), out=rd.root, notes=list(notes))
    leftovers = _merge_leftovers(rd)
    if leftovers:
        summary.notes.append(f"merged {leftovers} shard folder(s) left by an interrupted run")
    pool = None
    run_dir = rd.root / SHARD_DIR / f"{command}-{time.strftime('%Y%m%d-%H%M%S')}-" \
                                    f"{uuid.uuid4().hex[:6]}"
    try:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        workers = max(1, min(cfg.num_workers or cpus, cpus // cfg.worker_cpus))
        shards = partition(samples, max(1, min(len(samples), workers * SHARDS_PER_WORKER)))
        if not shards:
            return summary
        cfg, shards = _absolute(cfg, samples)[0], [_absolute(cfg, p)[1] for p in shards]
        pool = _get_pool(ray, cfg, min(workers, len(shards)), keep=not started)
        _run_models(pool, cfg, command, samples, shards, run_dir, rd, summary)
    except BaseException:
        if pool is not None:  # do not keep actors that may still run a cancelled shard
            pool.shutdown()
            _POOLS.clear()
        raise
    finally:
        if started:
            if pool is not None:
                pool.shutdown()
            ray.shutdown()
        elif summary.interrupted and pool is not None:
            pool.shutdown()
            _POOLS.clear()
    # shards merged as they completed; what interrupted (or failed) shards wrote is kept too
    kept = _merge_leftovers(rd)
    if kept:
        summary.notes.append(f"kept the partial results of {kept} interrupted shard(s) "
                             "(not counted above)")
    return summary
