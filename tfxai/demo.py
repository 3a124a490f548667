"""``tfxai demo``: the embedded default, end to end and offline.

It explains two offline-pretrained models of one family, EfficientNet-Lite0 and -Lite1
(:mod:`tfxai.zoo.efficientnet_lite`; ImageNet top-1 75.1 and 76.7 %), on the six sample
photographs that scikit-image and scikit-learn ship (exported at run time by
:mod:`tfxai.data.samples`), with the hand-measured VOC boxes of the repository's ``annotations/``
folder. It attributes with a panel of methods, evaluates localisation (IoU, pointing game) and,
where those metrics exist, infidelity (normalised, so methods compare) and max-sensitivity, then
writes the Analyser's report. Two models of one architecture give the report's reliability test
(does a measure order the methods the same way on both models?) a verdict.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tfxai.attribution.registry import list_methods
from tfxai.evaluation.registry import list_metrics
from tfxai.run import RunConfig, RunSummary, run_evaluate

__all__ = ["DemoResult", "run_demo", "DEMO_MODELS", "DEMO_METHODS", "DEMO_METRICS"]

#: one family of real offline models (same architecture, different accuracy): the reliability
#: test of the report needs at least two
DEMO_MODELS = ("efficientnet_lite0", "efficientnet_lite1")
#: methods of the demo panel with the parameters that keep it within a few minutes on 2 cores
DEMO_METHODS: dict[str, dict[str, Any]] = {
    "saliency": {},
    "gradcam": {},
    "gradcam_pp": {},
    "guided_backprop": {},
    "integrated_gradients": {"steps": 32},
    "deeplift": {},
    "lime": {"n_samples": 150},
}
#: metrics evaluated on every method
DEMO_METRICS = ("iou", "pointing_game", "energy_pointing_game", "infidelity")
#: metrics that re-run the method many times: only on the cheap methods
DEMO_RERUN_METRICS = ("max_sensitivity",)
DEMO_CHEAP_METHODS = ("saliency", "gradcam", "guided_backprop")


@dataclass
class DemoResult:
    out: Path
    report: Path | None
    summaries: list[RunSummary] = field(default_factory=list)


def _panel(available: set[str]) -> tuple[list[str], dict[str, dict[str, Any]]]:
    methods = [m for m in DEMO_METHODS if m in available]
    return methods, {m: DEMO_METHODS[m] for m in methods if DEMO_METHODS[m]}


def run_demo(out: str | Path = "results/demo", progress: bool = True, seed: int = 0) -> DemoResult:
    """Run the demo into ``out``; returns where the report is. Re-running resumes."""
    from tfxai.data.samples import annotations_dir, export_sample_images

    out = Path(out)
    images = out / "images"
    export_sample_images(images)
    methods, params = _panel(set(list_methods()))
    metrics_all = set(list_metrics())
    base = {
        "models": list(DEMO_MODELS), "weights": "imagenet", "images": images,
        "annotations": annotations_dir(), "out": out, "progress": progress, "seed": seed,
        "batch_size": 6,
    }
    summaries = [run_evaluate(RunConfig(
        methods=methods, metrics=[m for m in DEMO_METRICS if m in metrics_all],
        method_params=params, **base))]
    rerun = [m for m in DEMO_RERUN_METRICS if m in metrics_all]
    cheap = [m for m in DEMO_CHEAP_METHODS if m in methods]
    if rerun and cheap:
        summaries.append(run_evaluate(RunConfig(methods=cheap, metrics=rerun, **base)))
    report = _analyse(out, images)
    return DemoResult(out, report, summaries)


def _analyse(out: Path, images: Path) -> Path | None:
    try:
        from tfxai.analysis import AnalysisOptions, analyse
    except ImportError:
        return None
    options = AnalysisOptions(gallery=6, images=images)
    result = analyse([out], out / "analysis", options)
    reports = [f for f in result.files if Path(f).name == "report.html"]
    return Path(reports[0]) if reports else None
