"""What a run is asked to do (:class:`RunConfig`, the CLI options) and what it did
(:class:`RunSummary`). TensorFlow is imported only to record its version."""

from __future__ import annotations

import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tfxai import metadata
from tfxai.messages import OptionMessage
from tfxai.metadata import nan_reason

__all__ = ["TARGET_MODES", "EXECUTORS", "ConfigError", "RunConfig", "RunSummary"]


TARGET_MODES = ("predicted", "label")


EXECUTORS = ("local", "ray")


class ConfigError(OptionMessage, ValueError):
    """A usage error found before any work is done (exit code 2 in the CLI). Its message names
    run options as ``{opt:name}`` (:mod:`tfxai.messages`): ``str()`` shows the
    :class:`RunConfig` field, the CLI its flag."""


@dataclass
class RunConfig:
    """Parameters of one ``attribute``/``evaluate`` run (the CLI options)."""

    models: Sequence[str]
    methods: Sequence[str]
    images: str | Path | Sequence[str | Path]
    metrics: Sequence[str] = ()
    annotations: str | Path | None = None
    labels: str | Path | None = None
    #: labels from the file names, e.g. ``sim_{synset}_`` (:mod:`tfxai.data.names`)
    labels_from_name: str | None = None
    weights: str = "imagenet"
    out: str | Path = "results"
    target: str = "predicted"
    resize: str = "squash"
    limit: int | None = None
    batch_size: int = 8
    seed: int = 0
    method_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    metric_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    shard: tuple[int, int] | None = None
    progress: bool = True
    model_options: dict[str, Any] = field(default_factory=dict)
    #: ``local`` (default) or ``ray``
    executor: str = "local"
    #: Ray cluster address (``auto`` or ``HOST:PORT``); None starts a local Ray cluster
    address: str | None = None
    #: Ray actors to run (default: one per CPU of the cluster); sizes a local cluster too
    num_workers: int | None = None
    #: CPUs reserved by each Ray actor (also its TensorFlow thread count)
    worker_cpus: int = 1

    def validate(self) -> None:
        if self.executor not in EXECUTORS:
            raise ConfigError(f"{{opt:executor}} must be one of {EXECUTORS}, got {self.executor!r}")
        if self.num_workers is not None and self.num_workers < 1:
            raise ConfigError(f"{{opt:num_workers}} must be >= 1, got {self.num_workers}")
        if self.worker_cpus < 1:
            raise ConfigError(f"{{opt:worker_cpus}} must be >= 1, got {self.worker_cpus}")
        if self.executor == "local" and (self.address or self.num_workers):
            raise ConfigError("{opt:address} and {opt:num_workers} need {opt:executor} ray")
        if self.target not in TARGET_MODES:
            raise ConfigError(f"{{opt:target}} must be one of {TARGET_MODES}, got {self.target!r}")
        if self.resize not in ("squash", "crop"):
            raise ConfigError(f"{{opt:resize}} must be 'squash' or 'crop', got {self.resize!r}")
        if self.batch_size < 1:
            raise ConfigError(f"{{opt:batch_size}} must be >= 1, got {self.batch_size}")
        if not self.models:
            raise ConfigError("{opt:models}: give at least one model")
        if not self.methods:
            raise ConfigError("{opt:methods}: give at least one method")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"{{opt:limit}} must be >= 1, got {self.limit}")
        known = {m for m in self.methods} | {m.partition("+")[0] for m in self.methods}
        for name in self.method_params:
            if name not in known:
                raise ConfigError(
                    f"{{opt:method_params}} {name}.*: {name!r} is not one of the methods of this run "
                    f"({', '.join(self.methods)})"
                )
        for name in self.metric_params:
            if name not in self.metrics:
                raise ConfigError(
                    f"{{opt:metric_params}} {name}.*: {name!r} is not one of the metrics of this run "
                    f"({', '.join(self.metrics) or 'none'})"
                )

    def record(self, command: str) -> dict[str, Any]:
        import tensorflow as tf

        from tfxai import __version__

        return {
            "command": command,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "models": list(self.models), "methods": list(self.methods),
            "metrics": list(self.metrics), "images": str(self.images),
            "annotations": str(self.annotations) if self.annotations else None,
            "labels_from_name": self.labels_from_name,
            "weights": self.weights, "target": self.target, "resize": self.resize,
            "limit": self.limit, "batch_size": self.batch_size, "seed": self.seed,
            "method_params": self.method_params, "metric_params": self.metric_params,
            "shard": list(self.shard) if self.shard else None,
            "executor": self.executor, "address": self.address,
            "num_workers": self.num_workers,
            "metric_meta": _metric_meta(self.metrics),
            "versions": {"tfxai": __version__, "tensorflow": tf.__version__,
                         "numpy": np.__version__, "python": platform.python_version()},
        }


def _metric_meta(names: Sequence[str]) -> dict[str, Any]:
    """What a reader needs of each metric of the run (:mod:`tfxai.metadata`), recorded with the
    results: family, better direction and the variants whose direction differs."""
    out = {}
    for name in names:
        meta = metadata.get(name)
        if meta is not None:
            out[name] = {"family": meta.family, "direction": meta.direction,
                         "variant_directions": dict(meta.variant_directions)}
    return out


@dataclass
class RunSummary:
    """What a run did. ``errors`` counts per-image failures recorded in ``errors.csv``.

    ``values`` counts the score rows written by (metric, variant) and ``undefined`` the NaN values
    among them by (metric, variant, reason): the reason is the metric's note without its measured
    numbers (:func:`nan_reason`), e.g. ``gated out (|ΔP| ≥ 0.05)``.
    """

    images: int = 0
    computed: int = 0
    skipped: int = 0
    rows: int = 0
    errors: int = 0
    interrupted: bool = False
    out: Path | None = None
    notes: list[str] = field(default_factory=list)
    #: warnings issued by the run (input-independent methods); each is also a note
    warnings: list[str] = field(default_factory=list)
    values: dict[tuple[str, str], int] = field(default_factory=dict)
    undefined: dict[tuple[str, str, str], int] = field(default_factory=dict)

    def count_rows(self, rows: list[dict[str, Any]]) -> None:
        """Count written score rows and their NaN values (rows carry the metric's note)."""
        for row in rows:
            key = (str(row["metric"]), str(row["variant"]))
            self.values[key] = self.values.get(key, 0) + 1
            if np.isnan(row["value"]):
                ukey = (*key, nan_reason(row.get("_metric_note", "")))
                self.undefined[ukey] = self.undefined.get(ukey, 0) + 1

    def add_counts(self, values: dict[tuple[str, str], int],
                   undefined: dict[tuple[str, str, str], int]) -> None:
        """Add another summary's counts (a Ray shard's)."""
        for k, n in values.items():
            self.values[tuple(k)] = self.values.get(tuple(k), 0) + n
        for k, n in undefined.items():
            self.undefined[tuple(k)] = self.undefined.get(tuple(k), 0) + n

    def undefined_lines(self) -> list[str]:
        """One line per metric with NaN values among the rows written, e.g.
        ``ssim_augmentation: 20 of 48 NaN — gated out (|ΔP| ≥ 0.05); by variant: rotate_15 4/6``."""
        lines = []
        for metric in sorted({m for m, _ in self.values}):
            total = sum(n for (m, _), n in self.values.items() if m == metric)
            reasons: dict[str, int] = {}
            by_variant: dict[str, int] = {}
            for (m, v, why), n in self.undefined.items():
                if m == metric:
                    reasons[why] = reasons.get(why, 0) + n
                    by_variant[v] = by_variant.get(v, 0) + n
            nan = sum(reasons.values())
            if not nan:
                continue
            ordered = sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))
            why = ordered[0][0] if len(ordered) == 1 else ", ".join(
                f"{n} {text}" for text, n in ordered)
            line = f"{metric}: {nan} of {total} NaN — {why}"
            variants = [v for v in sorted({v for m, v in self.values if m == metric}) if v]
            if len(variants) > 1:
                line += "; by variant: " + ", ".join(
                    f"{v} {by_variant[v]}/{self.values[(metric, v)]}" for v in variants
                    if by_variant.get(v))
            lines.append(line)
        return lines
