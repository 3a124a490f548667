"""The two studies of Erdem 2021: ``erdem2021-augment`` (robustness of explanations to augmentations,
SSIM) and ``erdem2021-reliability`` (can infidelity and sensitivity be relied on?).

[Erdem 2021, "Attribution methods in interpretability of deep CNNs", MSc thesis, Wrocław Univ. of
Science and Technology]
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from tfxai.studies.background import with_background
from tfxai.studies.base import (
    LITE_TOP1,
    Study,
    StudyContext,
    StudyError,
    cell_row,
    finding_row,
    select,
)
from tfxai.studies.data import DataChoice
from tfxai.studies.runs import evaluate, limit_of, read_scores

__all__ = ["Erdem2021Augment", "Erdem2021Reliability"]

GRADIENT_SHAP_BACKGROUND = 10

#: the gradient methods of both studies; integrated gradients follows eq. 3.6 of the thesis
#: (Riemann right-hand sum)
GRADIENT_METHODS: dict[str, dict[str, Any]] = {
    "saliency": {},
    "deconvnet": {},
    "guided_backprop": {},
    "gradcam": {},
    "guided_gradcam": {},
    "integrated_gradients": {"steps": 50, "baseline": "black", "rule": "riemann_right"},
}
#: the methods of the augmentation study. The two the published numbers name are guided Grad-CAM
#: and Deconvolution.
AUGMENT_METHODS: dict[str, dict[str, Any]] = {
    **{m: dict(p) for m, p in GRADIENT_METHODS.items()},
    "gradient_shap": {"n_samples": 5, "background_size": GRADIENT_SHAP_BACKGROUND},
}
AUGMENT_QUICK_METHODS = ("saliency", "deconvnet", "guided_backprop", "gradcam", "guided_gradcam")
#: SSIM (11×11 window, K1=0.01, K2=0.03, data range L per model×method), gated at |ΔP| < 0.05, on
#: maps under one convention for every method: channel sum, then |·|, not rescaled per image
SSIM: dict[str, Any] = {"gate": 0.05, "map_reduce": "sum", "map_absolute": True,
                        "map_scale": "none"}
AUGMENT_QUICK_LIMIT = 3
COLUMN_METHODS = {"Guided Grad-CAM": "guided_gradcam", "Deconvolution": "deconvnet"}

RELIABILITY_METHODS: dict[str, dict[str, Any]] = {
    m: dict(p) for m, p in GRADIENT_METHODS.items()
}
RELIABILITY_QUICK_METHODS = ("saliency", "deconvnet", "guided_backprop", "gradcam")
#: infidelity as Erdem measured it (σ = 0.003, 50 perturbations, not normalised), and tfxai's
#: normalised form beside it (a separate setting: never pooled)
INFIDELITY = {"sigma": 0.003, "n_samples": 50, "normalize": False}
INFIDELITY_NORMALISED = {"sigma": 0.003, "n_samples": 50, "normalize": True}
SENSITIVITY = {"radius": 0.02, "n_samples": 10}
RELIABILITY_QUICK_LIMIT = 3
#: the small_cnn family (Erdem's protocol: one architecture fine-tuned on 20..100 % of the data)
FRACTIONS = (0.2, 0.4, 0.6, 0.8, 1.0)
SMALL_CNN_FAMILY = {"n_per_class": 200, "size": 32, "epochs": 20, "optimizer": "adam",
                    "lr": 3e-3, "lr_after": 3e-4, "lr_drop_epoch": 15, "per_class": 8}
SMALL_CNN_QUICK = {**SMALL_CNN_FAMILY, "n_per_class": 60, "epochs": 8, "lr_drop_epoch": 6,
                   "per_class": 2}


def _independent(out: Path) -> set[tuple[str, str]]:
    """(model, method) pairs a run found input-independent (``runs.jsonl`` warnings)."""
    from tfxai.analysis.loading import read_runs

    return {(str(r.get("model")), str(r.get("method"))) for r in read_runs(out / "runs.jsonl", "")
            if r.get("warning") == "input_independent"}


# --------------------------------------------------------------------------------------- augment


class Erdem2021Augment(Study):
    name = "erdem2021-augment"
    title = "Erdem 2021: robustness of explanations to rotations and filters (SSIM)"
    summary = "SSIM(map(x), map(aug(x))) for 4 rotations and 5 G'MIC filters, gated at |ΔP|<0.05"

    def settings(self, quick: bool = False) -> dict[str, Any]:
        methods = {m: dict(p) for m, p in AUGMENT_METHODS.items()
                   if not quick or m in AUGMENT_QUICK_METHODS}
        return {
            "methods": methods, "metrics": {"ssim_augmentation": dict(SSIM)},
            "columns": dict(COLUMN_METHODS), "target": "predicted", "resize": "squash",
            "data": "imagenet-val",
            "models": list(self.quick_models if quick else self.default_models),
            "limit": AUGMENT_QUICK_LIMIT if quick else None,
            "gradient_shap_background": "the ImageNet50 photographs (first "
                                        f"{GRADIENT_SHAP_BACKGROUND}) when reachable, else seeded "
                                        "smooth random colour fields",
        }

    def protocol(self) -> list[str]:
        return [
            "methods: saliency, deconvnet (Deconvolution), guided backprop, Grad-CAM, guided "
            "Grad-CAM, integrated gradients (50 steps, black baseline, Riemann right sum: eq. "
            "3.6), gradient SHAP (5 samples per background image, "
            f"{GRADIENT_SHAP_BACKGROUND} background images); the published values name guided "
            "Grad-CAM and Deconvolution",
            "metric: SSIM between map(x) and map(aug(x)) (rotations: rotate(map(x)) vs "
            "map(rotate(x))), 11×11 window, K1=0.01, K2=0.03, data range L = the max |map| of the "
            "model×method over the images; a pair is compared only when |ΔP| < 0.05 on the "
            "target probability",
            "augmentations: rotations by ±15° and ±30° (black fill); G'MIC boost_chromaticity, "
            "freaky_details, normalize_local, mighty_details, sharpen",
            "map convention, the same for every method (tfxai's choice; REFERENCE.md does not "
            "record the thesis's): channel sum, absolute value, no per-image rescaling",
            "reported: mean ± std SSIM per method over all augmentations (image × augmentation "
            "values), per augmentation, and rotations vs filters",
            f"--quick: {self.quick_models[0]} on the first {AUGMENT_QUICK_LIMIT} images, the "
            f"gradient methods only ({', '.join(AUGMENT_QUICK_METHODS)})",
        ]

    def execute(self, ctx: StudyContext) -> None:
        data = ctx.choose_images("imagenet-val")
        methods, what = with_background(self.methods(ctx.options), "gradient_shap", data, ctx.out)
        if what is not None:
            ctx.say(f"gradient_shap background: the first {GRADIENT_SHAP_BACKGROUND} of {what}",
                    "data")
        ctx.say(f"models: {', '.join(ctx.models)}; methods: {', '.join(methods)}")
        evaluate(ctx, data, methods, {"ssim_augmentation": SSIM},
                 limit_of(ctx, AUGMENT_QUICK_LIMIT))

    def rows(self, ctx: StudyContext) -> list[dict[str, Any]]:
        scores = select(read_scores(ctx.out), metric="ssim_augmentation", metric_params=SSIM)
        pub = self.published()
        table_name, table = next(iter(pub["tables"].items()))
        models = [m for m in ctx.models if m in set(scores["model"])] or list(ctx.models)
        flagged = _independent(ctx.out)
        out: list[dict[str, Any]] = []
        for model in models:
            note = (f"published: Erdem's models; ours: {model}; n = images (values: image × "
                    "augmentation, gated pairs left out)")
            for row, method in COLUMN_METHODS.items():
                rows = select(scores, method, AUGMENT_METHODS[method], model=model)
                extra = ("; input-independent on this model (runs.jsonl)"
                         if (model, method) in flagged else "")
                out.append(cell_row(self.name, table_name, row, "mean", rows["value"],
                                    table["values"][row]["mean"], model, note + extra,
                                    rows["image_id"]))
                out.append(cell_row(self.name, table_name, row, "std", rows["value"],
                                    table["values"][row]["std"], model, note + extra,
                                    rows["image_id"], statistic="std"))
            out.extend(self._findings(scores, model, flagged))
        return out

    def _findings(self, scores: pd.DataFrame, model: str, flagged: set) -> list[dict[str, Any]]:
        pub = self.published()["findings"]
        rows = scores[scores["model"] == model]
        means = rows.groupby("method")["value"].mean().dropna().sort_values(ascending=False)
        independent = [m for m in means.index if (model, m) in flagged]
        caveat = (f"; {', '.join(independent)} input-independent on this model (its map is the "
                  "same for every image: SSIM 1 on filters by construction)" if independent else "")
        order = ", ".join(f"{m} {v:.3f}" for m, v in means.items())
        out = []
        for finding, method, pick in (("most robust", "guided_gradcam", 0),
                                      ("least robust", "deconvnet", -1)):
            holds = None if method not in means.index or len(means) < 2 else \
                means.index[pick] == method
            out.append(finding_row(self.name, finding, pub[finding], holds, model,
                                   f"mean SSIM (all augmentations): {order}{caveat}"))
        rot = rows[rows["variant"].astype(str).str.startswith("rotate")]
        fil = rows[~rows["variant"].astype(str).str.startswith("rotate")]
        r, f = rot.groupby("method")["value"].mean(), fil.groupby("method")["value"].mean()
        both = [m for m in r.index if m in f.index and not (math.isnan(r[m]) or math.isnan(f[m]))]
        lower = [m for m in both if r[m] < f[m]]
        text = ", ".join(f"{m} {r[m]:.3f}/{f[m]:.3f}" for m in both)
        evidence = (f"rotations lower than filters for {len(lower)} of {len(both)} methods "
                    f"(rotations/filters: {text}); no published direction to hold them against")
        out.append(finding_row(self.name, "rotations vs filters", pub["rotations vs filters"],
                               None, model, evidence))
        return out


# --------------------------------------------------------------------------------------- reliability


class Erdem2021Reliability(Study):
    name = "erdem2021-reliability"
    title = "Erdem 2021: is the order of methods by infidelity / sensitivity the same across models?"
    summary = ("pair share and Kendall's W of the method order by infidelity and max-sensitivity "
               "across a model family")
    quick_models: ClassVar[tuple[str, ...]] = ("efficientnet_lite0", "efficientnet_lite1",
                                               "efficientnet_lite2")

    def settings(self, quick: bool = False) -> dict[str, Any]:
        methods = {m: dict(p) for m, p in RELIABILITY_METHODS.items()
                   if not quick or m in RELIABILITY_QUICK_METHODS}
        return {
            "methods": methods,
            "metrics": {"infidelity": dict(INFIDELITY), "max_sensitivity": dict(SENSITIVITY)},
            "also": {"infidelity": dict(INFIDELITY_NORMALISED)},
            "target": "predicted", "resize": "squash", "data": "imagenet-val",
            "models": list(self.quick_models if quick else self.default_models),
            "accuracy": dict(LITE_TOP1), "architecture": "efficientnet_lite",
            "limit": RELIABILITY_QUICK_LIMIT if quick else None,
            "thresholds": {"min_pair_share": 1.0, "min_w": 0.9},
            "small_cnn": dict(SMALL_CNN_QUICK if quick else SMALL_CNN_FAMILY),
            "fractions": list(FRACTIONS),
        }

    def protocol(self) -> list[str]:
        return [
            "a measure is reliable when, within one dataset and architecture, the order of the "
            "methods by the measure is the same in models of different accuracy; for each "
            "measure: the share of method pairs whose order is the same in every model (pair "
            "share) and Kendall's W across the models",
            "models: EfficientNet-Lite0/1/2 (ImageNet top-1 75.1 / 76.7 / 77.6 %), one family of "
            "one architecture; or --model small_cnn: the thesis's protocol on the synthetic "
            "shapes (small_cnn fine-tuned on 20/40/60/80/100 % of the training data, scored on "
            f"{SMALL_CNN_FAMILY['per_class']} test images per class)",
            "methods: saliency, deconvnet, guided backprop, Grad-CAM, guided Grad-CAM, "
            "integrated gradients (50 steps, black baseline)",
            "measures: infidelity (σ = 0.003, 50 perturbations, not normalised: Erdem's) and, "
            "as a separate setting, normalised (tfxai's default); max-sensitivity (r = 0.02, 10 "
            "samples; absolute as Erdem, and relative)",
            "consistent: pair share = 1 and W ≥ 0.9",
            f"--quick: the three Lite models on the first {RELIABILITY_QUICK_LIMIT} images, "
            f"{', '.join(RELIABILITY_QUICK_METHODS)}",
        ]

    def _small_cnn(self, ctx: StudyContext) -> bool:
        return ctx.models == ["small_cnn"]

    def execute(self, ctx: StudyContext) -> None:
        methods = self.methods(ctx.options)
        if self._small_cnn(ctx):
            data, models = self._family(ctx)
            ctx.extra["accuracy_source"] = "models.csv (test accuracy of the fine-tuned family)"
        else:
            if "small_cnn" in ctx.models:
                raise StudyError("--model small_cnn builds its own family: give it alone")
            data = ctx.choose_images("imagenet-val")
            models = list(ctx.models)
            self._write_models_csv(ctx)
        ctx.say(f"models: {', '.join(Path(m).stem for m in models)}; methods: {', '.join(methods)}")
        limit = limit_of(ctx, None if self._small_cnn(ctx) else RELIABILITY_QUICK_LIMIT)
        evaluate(ctx, data, methods, {"infidelity": INFIDELITY, "max_sensitivity": SENSITIVITY},
                 limit, models=models)
        evaluate(ctx, data, methods, {"infidelity": INFIDELITY_NORMALISED}, limit, models=models)

    def _write_models_csv(self, ctx: StudyContext) -> None:
        """``models.csv`` in the results folder: the Lite models' published accuracies and their
        common architecture (the reliability test reads it, as ``tfxai analyse`` will later)."""
        rows = []
        for model in ctx.models:
            if model in LITE_TOP1:
                rows.append({"model": model, "accuracy": LITE_TOP1[model],
                             "architecture": "efficientnet_lite",
                             "accuracy_source": "published ImageNet top-1 (EfficientNet-Lite)"})
        if rows:
            ctx.out.mkdir(parents=True, exist_ok=True)
            pd.DataFrame(rows).to_csv(ctx.out / "models.csv", index=False)
            ctx.say("accuracies: the published ImageNet top-1 of each Lite model ("
                    + ", ".join(f"{r['model']} {r['accuracy']:.3f}" for r in rows)
                    + "), written to models.csv; architecture efficientnet_lite", "data")

    def _family(self, ctx: StudyContext) -> tuple[DataChoice, list[str]]:
        """Erdem's protocol on the synthetic shapes: a small_cnn family fine-tuned on 20..100 % of
        the training data (``tfxai synth`` + ``tfxai finetune``), scored on a class-stratified list
        of test images."""
        from tfxai.data.synthetic import make_synthetic_dataset
        from tfxai.training import finetune

        p = SMALL_CNN_QUICK if ctx.quick else SMALL_CNN_FAMILY
        data_dir = Path(ctx.options.images) if ctx.options.images else ctx.out / "data"
        if ctx.options.images is None and not (data_dir / "labels.csv").is_file():
            make_synthetic_dataset(data_dir, n_per_class=p["n_per_class"], size=p["size"],
                                   seed=ctx.options.seed)
        ctx.say(f"data: {data_dir} ({'given' if ctx.options.images else 'tfxai synth'}, "
                f"{p['n_per_class']} images per class)", "data")
        models_dir = ctx.out / "models"
        names = [models_dir / f"small_cnn_f{f:g}.keras" for f in FRACTIONS]
        if not all(n.is_file() for n in names):
            finetune("small_cnn", data_dir, fractions=FRACTIONS, out_dir=models_dir,
                     epochs=p["epochs"], lr=p["lr"], lr_after=p["lr_after"],
                     lr_drop_epoch=p["lr_drop_epoch"], optimizer=p["optimizer"],
                     seed=ctx.options.seed, progress=ctx.options.progress)
        table = pd.read_csv(models_dir / "models.csv")
        ctx.say("family: " + ", ".join(f"{r.model} accuracy {r.accuracy:.3f}"
                                       for r in table.itertuples()), "data")
        names = [models_dir / f for f in table["file"]]
        listing = self._stratified(data_dir, p["per_class"], ctx.out / "test_images.txt")
        ctx.say(f"images: {listing} ({p['per_class']} test images per class)", "data")
        annotations = data_dir / "annotations"
        return (DataChoice(listing, annotations if annotations.is_dir() else None, None,
                           str(listing), "given"), [str(n.resolve()) for n in names])

    @staticmethod
    def _stratified(data_dir: Path, per_class: int, listing: Path) -> Path:
        """A list file with the first ``per_class`` test images of every class (the docs' old
        ``--limit 24`` took images of one class only)."""
        from tfxai.data.images import IMAGE_EXTENSIONS

        root = data_dir / "test" if (data_dir / "test").is_dir() else data_dir
        lines = []
        for folder in sorted(p for p in root.iterdir() if p.is_dir() and p.name != "annotations"):
            images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
            lines.extend(str(p.resolve()) for p in images[:per_class])
        listing.parent.mkdir(parents=True, exist_ok=True)
        listing.write_text("\n".join(lines) + "\n")
        return listing

    def analysis_options(self, ctx: StudyContext) -> dict[str, Any]:
        return {"by": ("model_id", "method")}

    def rows(self, ctx: StudyContext) -> list[dict[str, Any]]:
        from tfxai.analysis import AnalysisOptions, load_results
        from tfxai.analysis.tables import compute_tables

        pub = self.published()["findings"]
        try:
            results = load_results([ctx.out])
        except ValueError:
            return [finding_row(self.name, k, v, None, "", "no results") for k, v in pub.items()]
        tables, _ = compute_tables(results, AnalysisOptions(**self.analysis_options(ctx)))
        test = tables["reliability"]
        family = ", ".join(str(m) for m in tables["model_info"]["model_id"])
        infidelity = _label(tables["_scores"], "infidelity", INFIDELITY)
        flagged = _independent(ctx.out)
        out = [
            self._finding(test, finding, metric, expected, pub[finding], family, flagged)
            for finding, metric, expected in (
                ("infidelity", infidelity, "unreliable"),
                ("sensitivity", "max_sensitivity", "order-preserving"),
            )
        ]
        for metric, label in ((infidelity, "infidelity (Erdem: not normalised)"),
                              ("max_sensitivity", "max-sensitivity (absolute, as Erdem)")):
            statement = pub["infidelity" if metric == infidelity else "sensitivity"]
            out.extend(self._numbers(test, metric, label, statement, family))
        return out

    def _finding(self, test: pd.DataFrame, finding: str, metric: str, expected: str,
                 statement: str, family: str, flagged: set[tuple[str, str]]) -> dict[str, Any]:
        """Whether ``metric``'s verdict is the ``expected`` one on the model family, with the
        reliability test's numbers as evidence."""
        rows = test[(test["metric"] == metric) & (test["variant"] == "")]
        verdict_rows = rows[rows["scope"] == "verdict"]
        if verdict_rows.empty:
            return finding_row(self.name, finding, statement, None, family,
                               f"{metric}: no reliability test (no values)")
        v = verdict_rows.iloc[0]
        text = _verdict_text(test, metric, v, relative=finding == "sensitivity", flagged=flagged)
        if v["verdict"] == "insufficient data":
            holds = None
        elif expected == "unreliable":
            holds = v["verdict"] == "unreliable"
        else:  # consistent within the architecture; across is testable with several only
            holds = v["verdict"] in ("order-preserving", "reliable")
            if "across" not in set(rows[rows["scope"] != "verdict"]["scope"]):
                text += ("; one architecture: only 'consistent within an architecture' is "
                         "tested, not 'inconsistent across'")
        return finding_row(self.name, finding, statement, holds, family, text)

    def _numbers(self, test: pd.DataFrame, metric: str, label: str, statement: str,
                 family: str) -> list[dict[str, Any]]:
        """The pair share and Kendall's W of ``metric`` on the family (the study gives only the
        finding, not the numbers)."""
        rows = test[(test["metric"] == metric) & (test["variant"] == "")
                    & (test["scope"] == "verdict")]
        return [{"study": self.name, "table": "Reliability test (one family of models)",
                 "row": label, "column": column,
                 "ours": float(rows.iloc[0][column]) if len(rows) else math.nan,
                 "ours_ci_low": math.nan, "ours_ci_high": math.nan,
                 "n": int(rows.iloc[0]["n_models"]) if len(rows) else 0,
                 "published": statement, "model": family,
                 "note": "n = models; REFERENCE.md gives the finding, not the numbers"}
                for column in ("pair_share", "kendalls_w")]  # fmt: skip


def _verdict_text(test: pd.DataFrame, metric: str, v: pd.Series, relative: bool,
                  flagged: set[tuple[str, str]]) -> str:
    """The evidence of a reliability finding: the verdict ``v`` with its numbers and reason, the
    ``relative`` variant's verdict (sensitivity), and the input-independent methods."""
    text = (f"{metric}: verdict {v['verdict']} "
            f"(pair share {_f(v['pair_share'])}, Kendall's W {_f(v['kendalls_w'])}, "
            f"{int(v['n_models'])} models, {int(v['n_methods'])} methods)")
    if isinstance(v.get("reason"), str) and v["reason"]:
        text += f"; {v['reason']}"
    if relative:
        rel = test[(test["metric"] == metric) & (test["variant"] == "relative")
                   & (test["scope"] == "verdict")]
        if len(rel):
            text += (f"; relative variant: verdict {rel.iloc[0]['verdict']} (pair share "
                     f"{_f(rel.iloc[0]['pair_share'])}, W {_f(rel.iloc[0]['kendalls_w'])})")
    if flagged:
        text += ("; input-independent on these models (runs.jsonl): "
                 + ", ".join(f"{m} on {Path(model).stem}" for model, m in sorted(flagged))
                 + (" (its sensitivity is 0 by construction)" if relative else
                    " (its map is the same for every image of a class)"))
    return text


def _label(scores: pd.DataFrame, metric: str, params: dict[str, Any]) -> str:
    """The analysis label of ``metric`` computed with ``params`` (``infidelity (normalize=false)``
    when the folder holds several settings, else ``infidelity``)."""
    from tfxai.analysis.settings import base_name

    rows = scores[scores["metric"].map(base_name) == metric]
    for label, part in rows.groupby("metric"):
        if select(part.assign(metric=metric), metric=metric, metric_params=params).shape[0]:
            return str(label)
    return metric


def _f(value: Any) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "n/a"
    return "n/a" if np.isnan(v) else f"{v:.3f}"
