"""Every check that needs no model, before anything is loaded or written: the images, what the
metrics and the target need of them, the model names, metric names and parameters."""

from __future__ import annotations

from pathlib import Path

from tfxai.attribution.base import Attributer
from tfxai.data.dataset import Sample, discover, shard
from tfxai.evaluation.base import Metric
from tfxai.messages import template_of
from tfxai.pipeline.config import ConfigError, RunConfig
from tfxai.pipeline.session import build_metrics

__all__ = ["load_samples", "check_model_names", "check_inputs", "preflight", "check_backgrounds", "check_metrics"]


def load_samples(cfg: RunConfig) -> list[Sample]:
    samples = discover(cfg.images, cfg.annotations, cfg.labels, limit=None,
                       name_pattern=cfg.labels_from_name)
    if cfg.shard is not None:
        samples = shard(samples, *cfg.shard)
    return samples[: cfg.limit] if cfg.limit else samples


def check_model_names(cfg: RunConfig) -> None:
    """Registered names, existing model files and weights files, checked without loading."""
    from tfxai.models import MODELS, ModelLoadError, get_model_spec

    registered = False
    for name in cfg.models:
        if str(name).lower() in MODELS:
            registered = True
            continue
        if Path(str(name)).exists():
            continue
        if Path(str(name)).suffix.lower() in (".keras", ".h5", ".hdf5"):
            raise ConfigError(f"model file {str(name)!r} does not exist")
        try:
            get_model_spec(str(name))
        except ModelLoadError as exc:
            raise ConfigError(template_of(exc)) from None
    if registered and cfg.weights not in ("imagenet", "none") and not Path(cfg.weights).exists():
        raise ConfigError(f"weights file {cfg.weights!r} does not exist "
                          "({opt:weights} takes 'imagenet', 'none' or a path to a weights file)")


def _where_annotations(cfg: RunConfig, them: str = "it") -> str:
    if cfg.annotations is not None:
        return (f"in {cfg.annotations} (as <image id>.xml or <stem>.xml, or a mask "
                "<stem>.png)")
    return f"next to {them} (same stem, .xml; or a mask <stem>_mask.png)"


def check_inputs(cfg: RunConfig, samples: list[Sample], metrics: dict[str, Metric]) -> list[str]:
    """Boxes for metrics that need them (``Metric.needs_boxes``) and labels for ``--target
    label``: none at all is a usage error, found before any model is loaded; some missing is a
    note. Only file names are looked at (annotation files are read with their images)."""
    notes: list[str] = []
    if not samples:
        return notes
    n = len(samples)
    boxed = sorted(name for name, m in metrics.items() if m.needs_boxes)
    if boxed:
        missing = sum(1 for s in samples if not s.has_ground_truth)
        if missing == n:
            raise ConfigError(
                f"metric(s) {', '.join(boxed)} need bounding boxes or segmentation masks, but none "
                f"of the {n} images of {cfg.images} has a Pascal-VOC XML file or mask PNG "
                f"{_where_annotations(cfg)}. Put <image stem>.xml next to each image or pass "
                "{opt:annotations} DIR, or choose metrics that need no boxes (tfxai metrics lists "
                "what each needs)"
            )
        if missing:
            notes.append(f"{missing} of {n} images have no annotation file "
                         f"{_where_annotations(cfg, 'them')}: their "
                         f"{', '.join(boxed)} values are NaN with the note 'no boxes'")
    if cfg.target == "label":
        unlabelled = sum(1 for s in samples if s.label is None and s.annotation_path is None)
        if unlabelled == n:
            raise ConfigError(
                f"{{opt:target}} label needs the true class of each image, but none of the {n} images "
                f"of {cfg.images} has one: pass {{opt:labels}} CSV (columns image,label; a class index "
                "or a WordNet synset), put VOC XML files next to the images (or {opt:annotations} "
                "DIR), or use ImageNet-style synset folders; or use {opt:target} predicted"
            )
    return notes


def preflight(cfg: RunConfig, command: str) -> tuple[list[Sample], list[str]]:
    """Every check that needs no model, before anything is loaded or written: the images and
    what the metrics and the target need of them, and the model names. Returns the samples and
    notes for the summary."""
    samples = load_samples(cfg)
    metrics = build_metrics(cfg, "") if command == "evaluate" else {}
    notes = check_inputs(cfg, samples, metrics)
    check_model_names(cfg)
    return samples, notes


def check_backgrounds(atts: dict[str, Attributer], samples: list[Sample]) -> None:
    """Refuse a SHAP background folder that holds evaluated images (before any work)."""
    for att in atts.values():
        try:
            att.check_background_ids([s.path for s in samples])
        except ValueError as exc:
            raise ConfigError(template_of(exc)) from exc


def check_metrics(cfg: RunConfig) -> None:
    """Metric names and parameters, validated before any work."""
    if not cfg.metrics:
        raise ConfigError("{opt:metrics}: give at least one metric")
    for name in cfg.metrics:  # validate names and parameters before any work
        build_metrics(RunConfig(**{**cfg.__dict__, "metrics": [name]}), "")
