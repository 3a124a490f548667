"""``gattas2020``: localisation (IOU / IOU*) of four methods, split by prediction confidence.

[Gattas 2020, "Evaluating Feature Attribution Methods", BEng thesis, Univ. of Queensland]
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from tfxai.studies.background import with_background
from tfxai.studies.base import (
    Study,
    StudyContext,
    cell_row,
    finding_row,
    paired_difference,
    select,
)
from tfxai.studies.data import DataChoice
from tfxai.studies.runs import evaluate, read_scores

__all__ = ["Gattas2020"]

#: the study's columns and the tfxai method of each. Gattas's "GradCAM" column is guided Grad-CAM.
COLUMNS = {"DeepLIFT": "deeplift", "GradCAM": "guided_gradcam", "LIME": "lime", "SHAP": "shap"}
METRIC_ROWS = {"IOU": "iou", "IOU*": "iou_star"}
#: Gattas's confidence split: high when the top-1 probability is strictly greater
HIGH_CONFIDENCE = 0.9
#: published means closer than this share of the larger one are a tie: the pair's order is not
#: tested (DeepLIFT .306 vs SHAP .305)
TIE = 0.02

METHODS: dict[str, dict[str, Any]] = {
    "deeplift": {"reference": "black"},
    "guided_gradcam": {},
    # LIME as Gattas ran it: quickshift superpixels, 1000 samples, and the map keeps only the
    # top 5 superpixels with positive weight
    "lime": {"n_samples": 1000, "segmentation": "quickshift", "kernel_size": 4.0,
             "max_dist": 200.0, "ratio": 0.2, "fill": "zero", "kernel_width": 0.25,
             "top_k": 5, "positive_only": True},
    # GradientExplainer at the input, 200 samples, 50 background images not in the evaluated set
    "shap": {"explainer": "gradient", "n_samples": 200, "background_size": 50},
}
METRICS: dict[str, dict[str, Any]] = {
    "iou": {"k": 0.5, "mask": "union"},
    "iou_star": {"k": 1.0, "mask": "union"},
}
#: --quick: this many images per confidence band (the first by id of each band on the first model)
QUICK_PER_BAND = 1


class Gattas2020(Study):
    name = "gattas2020"
    title = "Gattas 2020: IOU and IOU* of DeepLIFT, Grad-CAM, LIME and SHAP by confidence band"
    summary = "IOU (k=0.5) / IOU* (k=1) of 4 methods on ImageNet val boxes, split at p > 0.9"
    quick_models: ClassVar[tuple[str, ...]] = ("efficientnet_lite0",)

    def settings(self, quick: bool = False) -> dict[str, Any]:
        return {
            "methods": {m: dict(p) for m, p in METHODS.items()},
            "columns": dict(COLUMNS),
            "metrics": {m: dict(p) for m, p in METRICS.items()},
            "high_confidence": HIGH_CONFIDENCE,
            "target": "predicted", "resize": "squash", "data": "imagenet-val",
            "models": list(self.quick_models if quick else self.default_models),
            "limit": None,
            "quick_images": (f"the first {QUICK_PER_BAND} image(s) by id of each confidence band "
                             "on the first model" if quick else None),
            "shap_background": "the ImageNet50 photographs when reachable, else seeded smooth "
                               "random colour fields (never the evaluated images)",
        }

    def protocol(self) -> list[str]:
        return [
            "methods: DeepLIFT (Rescale, black reference); 'GradCAM' = guided Grad-CAM (the "
            "study's GradCAM column); LIME (quickshift kernel_size=4, max_dist=200, ratio=0.2; "
            "1000 samples; hide colour 0; kernel width 0.25; the map keeps the top 5 positive "
            "superpixels); SHAP (GradientExplainer at the input, 200 samples, 50 background "
            "images not in the evaluated set)",
            "metrics: IOU with k=0.5 (|map| below 0.5·σ set to 0), IOU* with k=1; the ground "
            "truth M is the union of the annotated boxes (or the segmentation mask)",
            "split: high confidence when the top-1 probability > 0.9, else low; means per band",
            "orders: a published pair (2 % apart or more in both bands) is confirmed when the "
            "95 % bootstrap interval of our per-image difference lies above 0, reversed below "
            "0, undecided otherwise; the order holds when every pair is confirmed",
            "images squashed to the model's input size; the predicted class is explained (on "
            "logits: Gattas used the softmax by mistake, REFERENCE.md)",
            f"--quick: {self.quick_models[0]} on {2 * QUICK_PER_BAND} images: the first "
            f"{QUICK_PER_BAND} (by id) of each confidence band on that model, so that both bands "
            "are represented (a band without an image is said and the other band fills in)",
        ]

    def execute(self, ctx: StudyContext) -> None:
        data = ctx.choose_images("imagenet-val")
        methods, what = with_background(self.methods(ctx.options), "shap", data, ctx.out)
        if what is not None:
            ctx.say(f"SHAP background: {what}", "data")
        ctx.say(f"models: {', '.join(ctx.models)}; methods: {', '.join(methods)}")
        limit = ctx.options.limit
        if ctx.quick and limit is None:
            data = self._quick_images(ctx, data)
        evaluate(ctx, data, methods, METRICS, limit)

    @staticmethod
    def _quick_images(ctx: StudyContext, data: DataChoice) -> DataChoice:
        """The quick setting's images: the first :data:`QUICK_PER_BAND` (by id) of each confidence
        band of the first model's predictions, as a list file in the output folder."""
        from tfxai.data.dataset import discover, load_batch
        from tfxai.models import load_model

        samples = discover(data.images, data.annotations, name_pattern=data.labels_from_name)
        samples = [s for s in samples if s.has_ground_truth]
        if not samples:  # the run says what is missing
            return data
        bb = load_model(ctx.models[0], weights="imagenet")
        picked: dict[str, list] = {"high": [], "low": []}
        for start in range(0, len(samples), 16):
            batch = load_batch(samples[start : start + 16], bb.input_size, "squash")
            if not len(batch.images):
                continue
            top = bb.predict(batch.images).max(axis=1)
            for sample, p in zip(batch.samples, top, strict=True):
                band = picked["high" if p > HIGH_CONFIDENCE else "low"]
                if len(band) < QUICK_PER_BAND:
                    band.append(sample)
            if all(len(v) == QUICK_PER_BAND for v in picked.values()):
                break
        chosen = picked["high"] + picked["low"]
        if not picked["high"] or not picked["low"]:
            empty = "high" if not picked["high"] else "low"
            extra = [s for s in samples if s not in chosen][: 2 * QUICK_PER_BAND - len(chosen)]
            chosen += extra
            ctx.say(f"quick images: no image of {data.images} is in the {empty}-confidence band "
                    f"of {ctx.models[0]}; the other band fills in", "data")
        chosen.sort(key=lambda s: s.image_id)
        listing = ctx.out / "quick_images.txt"
        ctx.out.mkdir(parents=True, exist_ok=True)
        listing.write_text("".join(f"{s.path.resolve()}\n" for s in chosen))
        ctx.say("quick images: " + ", ".join(s.image_id for s in chosen) + f" (one per confidence "
                f"band of {ctx.models[0]}; listed in {listing})", "data")
        return DataChoice(listing, data.annotations, data.labels_from_name,
                          f"{data.description}; quick: {len(chosen)} of them", data.origin)

    def rows(self, ctx: StudyContext) -> list[dict[str, Any]]:
        scores = read_scores(ctx.out)
        pub = self.published()
        table_name, table = next(iter(pub["tables"].items()))
        values = table["values"]
        models = [m for m in ctx.models if m in set(scores["model"])] or list(ctx.models)
        out: list[dict[str, Any]] = []
        means: dict[tuple[str, str, str, str], float] = {}  # (model, metric, band, column)
        for model in models:
            note = (f"published: VGG16 (Gattas); ours: {model}; the GradCAM column is "
                    "guided_gradcam; n = images in the band")
            for label, metric in METRIC_ROWS.items():
                for band in ("high", "low"):
                    row = f"{label} {band}"
                    for column, method in COLUMNS.items():
                        rows = select(scores, method, METHODS[method], metric, METRICS[metric],
                                      model)
                        conf = pd.to_numeric(rows["confidence"], errors="coerce")
                        part = rows[(conf > HIGH_CONFIDENCE) if band == "high"
                                    else (conf <= HIGH_CONFIDENCE)]
                        cell = cell_row(self.name, table_name, row, column, part["value"],
                                        values[row][column], model, note, part["image_id"])
                        out.append(cell)
                        means[(model, label, band, column)] = cell["ours"]
            out.extend(self._order_findings(scores, model, values))
            out.extend(self._band_finding(model, means, _bands_text(scores, model)))
        return out

    def _order_findings(self, scores: pd.DataFrame, model: str, values: dict
                        ) -> list[dict[str, Any]]:
        """Does each published pair keep its order on ``model``? A pair is confirmed when the
        bootstrap interval of our per-image difference lies above 0, reversed when below, and
        undecided when it includes 0. The finding holds when every pair is confirmed, does not
        when one is reversed, and is not testable when the rest are undecided."""
        pub = self.published()["findings"]
        out = []
        for label, finding in (("IOU", "IOU order"), ("IOU*", "IOU* order")):
            metric = METRIC_ROWS[label]
            per = {c: select(scores, m, METHODS[m], metric, METRICS[metric], model)
                   for c, m in COLUMNS.items()}
            states: dict[int, list[str]] = {1: [], -1: [], 0: []}
            for a, b in _published_pairs(values, label):
                diff = paired_difference(per[a], per[b])
                if not math.isnan(diff.mean):
                    states[diff.sign].append(f"{a} − {b} {diff.text()}")
            tested = sum(len(v) for v in states.values())
            holds = False if states[-1] else True if tested and not states[0] else None
            ours = {c: float(pd.to_numeric(per[c]["value"], errors="coerce").mean())
                    for c in COLUMNS}  # both bands
            order = " > ".join(f"{c} {ours[c]:.3f}" for c in sorted(
                COLUMNS, key=lambda c: -ours[c] if not np.isnan(ours[c]) else np.inf))
            evidence = f"ours (all images): {order}; of {tested} published pairs, " + "; ".join(
                f"{len(states[k])} {name}" + (f" ({', '.join(states[k])})" if states[k] and k < 1
                                              else "")
                for k, name in ((1, "confirmed"), (-1, "reversed"),
                                (0, "undecided: the interval includes 0")))
            out.append(finding_row(self.name, finding, pub[finding], holds, model, evidence))
        return out

    def _band_finding(self, model: str, means: dict, bands: str) -> list[dict[str, Any]]:
        pub = self.published()["findings"]
        out = []
        pairs, higher, lower = 0, 0, []
        for label in METRIC_ROWS:
            for column in COLUMNS:
                hi, lo = means[(model, label, "high", column)], means[(model, label, "low", column)]
                if np.isnan(hi) or np.isnan(lo):
                    continue
                pairs += 1
                if hi > lo:
                    higher += 1
                else:
                    lower.append(f"{label} {column}")
        holds = None if pairs == 0 else higher == pairs
        evidence = (f"{higher} of {pairs} method × metric pairs higher for high confidence"
                    + (f" (not: {', '.join(lower)})" if lower else "")) if pairs else bands
        out.append(finding_row(self.name, "high vs low confidence", pub["high vs low confidence"],
                               holds, model, evidence))
        return out

    def analysis_options(self, ctx: StudyContext) -> dict[str, Any]:
        return {"high_confidence": HIGH_CONFIDENCE}


def _bands_text(scores: pd.DataFrame, model: str) -> str:
    """How many images each confidence band of ``model`` holds, and its highest top-1 p."""
    rows = scores[scores["model"] == model].drop_duplicates("image_id")
    conf = pd.to_numeric(rows["confidence"], errors="coerce")
    high, low = int((conf > HIGH_CONFIDENCE).sum()), int((conf <= HIGH_CONFIDENCE).sum())
    top = f"{conf.max():.3f}" if conf.notna().any() else "n/a"
    return (f"{high} images with top-1 p > {HIGH_CONFIDENCE:g} and {low} at or below it on {model} "
            f"(highest top-1 p {top}); both bands need an image")


def _published_pairs(values: dict, label: str) -> list[tuple[str, str]]:
    """(a, b) where the study has a ahead of b by more than :data:`TIE` in both bands."""
    pairs = []
    for a in COLUMNS:
        for b in COLUMNS:
            pa = [values[f"{label} {band}"][a] for band in ("high", "low")]
            pb = [values[f"{label} {band}"][b] for band in ("high", "low")]
            if all(x - y > TIE * max(x, y) for x, y in zip(pa, pb, strict=True)):
                pairs.append((a, b))
    return pairs
