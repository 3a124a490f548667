"""What a run holds while it works: its backbones, attributers and metrics, built once
(:class:`Session`), the SIGINT flag and the progress bar."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from tfxai.attribution.base import Attributer
from tfxai.attribution.registry import get_attributer
from tfxai.evaluation.base import Metric
from tfxai.evaluation.registry import get_metric
from tfxai.messages import template_of
from tfxai.models import Backbone, load_model
from tfxai.pipeline.config import ConfigError, RunConfig

__all__ = ["Interrupt", "sigint_guard", "progress_bar", "Stage", "stage_setter", "build_attributers", "build_metrics", "load_backbone", "Session"]


class Interrupt:
    """SIGINT sets a flag; the loops stop after the batch in flight."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum: int, frame: Any) -> None:
        if self.requested:  # second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.requested = True
        print("\ntfxai: interrupt received; stopping after the current batch "
              "(Ctrl-C again to abort now)", file=sys.stderr)


@contextmanager
def sigint_guard() -> Iterator[Interrupt]:
    flag = Interrupt()
    try:
        previous = signal.signal(signal.SIGINT, flag)
    except ValueError:  # not in the main thread
        yield flag
        return
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


def progress_bar(total: int, desc: str, enabled: bool) -> Any:
    """A progress bar over images (``desc`` names the model and the stage)."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, file=sys.stderr, disable=not enabled, unit="img",
                dynamic_ncols=True, leave=True)


#: sets the stage shown by the progress bar: (method, stage), e.g. ("gradcam", "evaluate iou")
Stage = Callable[[str, str], None]


def stage_setter(bar: Any, model: str) -> Stage:
    def stage(method: str, what: str) -> None:
        bar.set_description_str(f"{model} {method}: {what}", refresh=True)

    return stage


def build_attributers(cfg: RunConfig, bb: Backbone) -> dict[str, Attributer]:
    out = {}
    for name in cfg.methods:
        base, _, tunnel = name.partition("+")
        params = dict(cfg.method_params.get(name, {}))
        if tunnel and cfg.method_params.get(base):
            # the base method's parameters are its own inside the tunnel (n_samples, sigma...)
            params["inner"] = {**cfg.method_params[base], **params.get("inner", {})}
        try:
            att = get_attributer(name, bb, **params)
        except ValueError as exc:
            raise ConfigError(template_of(exc)) from exc
        if "seed" in att.params and "seed" not in params:
            # stochastic methods and noise tunnels take the run's seed (get_attributer hands a
            # tunnel's seed to the tunnel, which derives its inner method's seeds from it)
            att = get_attributer(name, bb, **{**params, "seed": cfg.seed})
        out[name] = att
    return out


def build_metrics(cfg: RunConfig, method: str) -> dict[str, Metric]:
    out = {}
    for name in cfg.metrics:
        params = dict(cfg.metric_params.get(name, {}))
        try:
            metric = get_metric(name, **params)
            if "seed" in metric.params and "seed" not in params:
                metric = get_metric(name, **{**params, "seed": cfg.seed})
        except ValueError as exc:
            raise ConfigError(template_of(exc)) from exc
        out[name] = metric
    return out


def load_backbone(cfg: RunConfig, name: str) -> Backbone:
    from tfxai.models import ModelLoadError

    try:
        return load_model(name, cfg.weights, seed=cfg.seed, **cfg.model_options)
    except ModelLoadError as exc:
        raise ConfigError(template_of(exc)) from exc


class Session:
    """Backbones, attributers and metrics built once and reused across batches, runs and shards.

    Their compiled ``tf.function`` s (fixed signatures with a free batch dimension) are traced
    once and reused for every batch, including a last partial one: memory stays flat.
    """

    def __init__(self, cfg: RunConfig) -> None:
        self.cfg = cfg
        self._backbones: dict[str, Backbone] = {}
        self._attributers: dict[str, dict[str, Attributer]] = {}
        self._metrics: dict[tuple[str, str], dict[str, Metric]] = {}

    def backbone(self, name: str) -> Backbone:
        if name not in self._backbones:
            self._backbones[name] = load_backbone(self.cfg, name)
        return self._backbones[name]

    def attributers(self, bb: Backbone) -> dict[str, Attributer]:
        if bb.name not in self._attributers:
            self._attributers[bb.name] = build_attributers(self.cfg, bb)
        return self._attributers[bb.name]

    def metrics(self, bb: Backbone, method: str) -> dict[str, Metric]:
        key = (bb.name, method)
        if key not in self._metrics:
            self._metrics[key] = build_metrics(self.cfg, method)
        return self._metrics[key]
