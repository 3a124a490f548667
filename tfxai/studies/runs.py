"""Composing ``tfxai.run`` runs for a study: one ``evaluate`` run per metric parameter set.

The study does not duplicate the pipeline: each call is a :class:`tfxai.run.RunConfig` handed to
:func:`tfxai.run.run_evaluate`, into the study's output folder, so it resumes (finished work is
skipped) and its results are the usual ``scores.csv``, ``predictions.csv``, attribution store and
``runs.jsonl``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tfxai.studies.base import StudyContext
from tfxai.studies.data import DataChoice

__all__ = ["background_folder", "evaluate", "limit_of", "read_scores"]


def limit_of(ctx: StudyContext, quick_limit: int | None) -> int | None:
    """``--limit`` when given, else the quick setting's limit (None for a full run)."""
    if ctx.options.limit is not None:
        return ctx.options.limit
    return quick_limit if ctx.quick else None


def evaluate(ctx: StudyContext, data: DataChoice, methods: Mapping[str, Mapping[str, Any]],
             metrics: Mapping[str, Mapping[str, Any]], limit: int | None,
             target: str = "predicted", models: list[str] | None = None) -> Any:
    """One ``tfxai evaluate`` run of the study's methods × metrics on its models and images."""
    from tfxai.run import RunConfig, run_evaluate

    opts = ctx.options
    cfg = RunConfig(
        models=list(models or ctx.models), methods=list(methods), metrics=list(metrics),
        images=str(data.images), annotations=str(data.annotations) if data.annotations else None,
        labels_from_name=data.labels_from_name, weights="imagenet", out=ctx.out, target=target,
        resize="squash", limit=limit, batch_size=opts.batch_size, seed=opts.seed,
        method_params={m: dict(p) for m, p in methods.items() if p},
        metric_params={m: dict(p) for m, p in metrics.items() if p},
        progress=opts.progress,
    )
    ctx.echo(f"evaluate: {', '.join(cfg.models)} × {', '.join(cfg.methods)} × "
             f"{', '.join(f'{m}{_short(p)}' for m, p in metrics.items())}"
             + (f" on the first {limit} images" if limit else ""))
    summary = run_evaluate(cfg)
    ctx.summaries.append(summary)
    for note in summary.notes:
        if note not in ctx.notes:
            ctx.notes.append(note)
    nan = sum(summary.undefined.values())
    ctx.echo(f"  {summary.images} images: {summary.computed} attributions computed, "
             f"{summary.skipped} reused/skipped, {summary.rows} score rows ({nan} NaN), "
             f"{summary.errors} errors")
    return summary


def _short(params: Mapping[str, Any]) -> str:
    shown = {k: v for k, v in params.items() if k not in ("background",)}
    return "" if not shown else "(" + ", ".join(f"{k}={v}" for k, v in shown.items()) + ")"


def read_scores(out: Path) -> Any:
    """The ``scores.csv`` rows of the study's folder (an empty frame when there are none)."""
    import pandas as pd

    from tfxai.analysis.loading import SCORES_FILE, SCORES_REQUIRED, normalise_scores, read_csv

    path = Path(out) / SCORES_FILE
    if not path.is_file():
        return normalise_scores(pd.DataFrame(columns=[*SCORES_REQUIRED, "image_id", "variant",
                                                      "method_params", "metric_params"]))
    return normalise_scores(read_csv(path, SCORES_REQUIRED))


def background_folder(evaluated: Path, out: Path, size: int = 50, seed: int = 0,
                      ) -> tuple[str, str]:
    """Background images for an expected-gradients method, never the evaluated ones: the shared
    ImageNet50 photographs when they are not the evaluated folder (shap's own background set),
    else ``size`` seeded smooth random colour fields written once to ``<out>/background``.
    Returns (folder, description)."""
    from tfxai.studies.data import shared_data_root

    root = shared_data_root()
    if root is not None and (root / "imagenet50").is_dir():
        folder = (root / "imagenet50").resolve()
        if folder != Path(evaluated).resolve():
            return str(folder), f"the ImageNet50 photographs ({folder}), not among the evaluated images"
    target = Path(out) / "background"
    if not target.is_dir() or len(list(target.glob("*.png"))) < size:
        import numpy as np
        from PIL import Image

        from tfxai.attribution.shapley import synthetic_background

        target.mkdir(parents=True, exist_ok=True)
        fields = synthetic_background(size, (224, 224), seed)
        for i, field in enumerate(fields):
            Image.fromarray(np.round(field).astype(np.uint8)).save(target / f"field_{i:03d}.png")
    return str(target.resolve()), (f"{size} seeded smooth random colour fields written to "
                                   f"{target} (no ImageNet50 folder beside the data)")
