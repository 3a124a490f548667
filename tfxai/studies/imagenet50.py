"""``imagenet50-occlusion``: confidence under occlusion of the explained region, ROAD and the mIoU of
that region against hand masks (Grad-CAM, SHAP, LIME on ImageNet50).

The study (REFERENCE.md, study 4) ran VGG16 / ResNet50 / DenseNet121; tfxai's offline family is
EfficientNet-Lite0/1/2. Where our models are not the study's, they are paired with the study's by
position (both lists in order of ImageNet accuracy: VGG16 71.3 < ResNet50 74.9 < DenseNet121 75.0 %;
Lite0 75.1 < Lite1 76.7 < Lite2 77.6 %), and the note of each cell says so.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from tfxai.studies.base import (
    Study,
    StudyContext,
    cell_row,
    finding_row,
    paired_difference,
    select,
)
from tfxai.studies.runs import evaluate, limit_of, read_scores

__all__ = ["ImageNet50Occlusion"]

METHODS: dict[str, dict[str, Any]] = {
    "gradcam": {},
    # the evaluated images are the ImageNet50 photographs: the background is SHAP's synthetic one
    "shap": {"explainer": "gradient", "n_samples": 200, "background_size": 50},
    "lime": {"n_samples": 1000, "segmentation": "quickshift", "kernel_size": 4.0,
             "max_dist": 200.0, "ratio": 0.2, "fill": "zero", "kernel_width": 0.25},
}
QUICK_METHODS = ("gradcam", "shap")
#: R = the top 50 % of the map; occluded pixels filled with 0 (black)
OCCLUSION = {"percentile": 50.0, "fill": "zero"}
ROAD = {"percentages": [10, 20, 30, 40, 50, 60, 70, 80, 90], "sigma": 0.01,
        "measure": "probability"}
#: mIoU: the IoU of the same region R with the ground truth (hand masks, else boxes)
MIOU = {"region": "top", "percentile": 50.0, "mask": "union"}
QUICK_LIMIT = 3


#: how the interval of a paired difference reads
_SIGN_TEXT = {1: " (above 0)", -1: " (below 0)", 0: " (includes 0: not distinguishable)"}


class ImageNet50Occlusion(Study):
    name = "imagenet50-occlusion"
    title = "ImageNet50: confidence under occlusion, ROAD and mIoU of Grad-CAM, SHAP and LIME"
    summary = "confidence drop/increase after occluding subject or background, ROAD, mIoU vs masks"

    def settings(self, quick: bool = False) -> dict[str, Any]:
        return {
            "methods": {m: dict(p) for m, p in METHODS.items() if not quick or m in QUICK_METHODS},
            "metrics": {"confidence_drop": dict(OCCLUSION),
                        "confidence_increase": dict(OCCLUSION), "road": dict(ROAD),
                        "iou": dict(MIOU)},
            "target": "predicted", "resize": "squash", "data": "imagenet50",
            "labels_from_name": "sim_{synset}_",
            "models": list(self.quick_models if quick else self.default_models),
            "published_models": ["vgg16", "resnet50", "densenet121"],
            "limit": QUICK_LIMIT if quick else None,
        }

    def protocol(self) -> list[str]:
        return [
            "methods: Grad-CAM (last conv layer), SHAP (GradientExplainer, 200 samples, 50 "
            "synthetic background images: the ImageNet50 photographs are the evaluated set), "
            "LIME (quickshift, 1000 samples)",
            "explained region R: the top 50 % of the map's pixels; b keeps R and fills the "
            "background with 0, s fills R (the subject) with 0; Y / O: the target probability "
            "before / after",
            "confidence_drop = 100·mean(max(0, Y−O)/Y), confidence_increase = 100·mean(1[Y<O]), "
            "for b and s; ROAD (MoRF and LeRF, 10..90 %, noisy linear imputation)",
            "mIoU: 100 × the mean IoU of R with the hand mask (PNG next to each image or in "
            "--annotations; boxes where there is no mask; left out when there is neither)",
            "finding subject vs background: holds when the 95 % bootstrap interval (over "
            "images) of the per-image drop difference s − b lies above 0",
            "labels from the file names (sim_{synset}_); the predicted class is explained",
            "models paired with the study's by position in order of ImageNet accuracy",
            f"--quick: {self.quick_models[0]} on the first {QUICK_LIMIT} images, "
            f"{', '.join(QUICK_METHODS)}",
        ]

    def execute(self, ctx: StudyContext) -> None:
        data = ctx.choose_images("imagenet50")
        methods = self.methods(ctx.options)
        limit = limit_of(ctx, QUICK_LIMIT)
        metrics: dict[str, dict[str, Any]] = {"confidence_drop": OCCLUSION,
                                              "confidence_increase": OCCLUSION, "road": ROAD}
        truth = self._ground_truth(data, limit)
        if truth:
            metrics["iou"] = MIOU
            ctx.say(f"mIoU ground truth: {truth}", "data")
        else:
            ctx.say("mIoU: not computed: the images have no segmentation mask (PNG) and no VOC "
                    "boxes; give --annotations DIR with <stem>.png masks (non-zero = object)",
                    "data")
        ctx.say(f"models: {', '.join(ctx.models)}; methods: {', '.join(methods)}")
        evaluate(ctx, data, methods, metrics, limit)

    @staticmethod
    def _ground_truth(data: Any, limit: int | None) -> str:
        from tfxai.data.dataset import discover

        samples = discover(data.images, data.annotations, limit=limit,
                           name_pattern=data.labels_from_name)
        masks = sum(1 for s in samples if s.mask_path is not None)
        boxes = sum(1 for s in samples if s.mask_path is None and s.annotation_path is not None)
        if not masks and not boxes:
            return ""
        parts = []
        if masks:
            parts.append(f"{masks} segmentation masks")
        if boxes:
            parts.append(f"{boxes} images with VOC boxes only (mIoU against boxes, not hand masks)")
        missing = len(samples) - masks - boxes
        if missing:
            parts.append(f"{missing} images without either (NaN)")
        return ", ".join(parts) + f" of {len(samples)} images"

    def pairs(self, models: list[str]) -> list[tuple[str, str | None]]:
        """(published model, ours or None): same names where ours include the study's, else by
        position."""
        published = self.published()["models"]
        if set(published) & set(models):
            return [(p, p if p in models else None) for p in published]
        return [(p, models[i] if i < len(models) else None) for i, p in enumerate(published)]

    def rows(self, ctx: StudyContext) -> list[dict[str, Any]]:
        scores = read_scores(ctx.out)
        pub = self.published()
        present = [m for m in ctx.models if m in set(scores["model"])] or list(ctx.models)
        out: list[dict[str, Any]] = []
        miou_by_model: dict[str, float] = {}
        for (table, spec), (metric, params, variant, scale) in zip(
            pub["tables"].items(),
            (("iou", MIOU, "", 100.0), ("confidence_drop", OCCLUSION, "s", 1.0)),
            strict=True,
        ):
            for published_model, ours in self.pairs(present):
                value = spec["values"]["gradcam"][published_model]
                if ours is None:
                    out.append({"study": self.name, "table": table, "row": "gradcam",
                                "column": published_model, "ours": math.nan,
                                "ours_ci_low": math.nan, "ours_ci_high": math.nan, "n": 0,
                                "published": value, "model": "",
                                "note": f"published on {published_model}; no model of ours "
                                        "paired with it (give more --model)"})
                    continue
                rows = select(scores, "gradcam", None, metric, params, ours, variant)
                how = "same model" if ours == published_model else "paired by position"
                note = f"published on {published_model}; ours on {ours} ({how}); n = images"
                if metric == "iou" and rows.empty:
                    note += "; no mIoU: no masks or boxes for these images"
                cell = cell_row(self.name, table, "gradcam", published_model, rows["value"],
                                value, ours, note, rows["image_id"], scale=scale)
                out.append(cell)
                if metric == "iou":
                    miou_by_model[ours] = cell["ours"]
        out.extend(self._findings(scores, present, miou_by_model))
        return out

    def _findings(self, scores: pd.DataFrame, models: list[str], miou: dict[str, float]
                  ) -> list[dict[str, Any]]:
        pub = self.published()["findings"]
        out = []
        for model in models:
            drop = select(scores, metric="confidence_drop", metric_params=OCCLUSION, model=model)
            rise = select(scores, metric="confidence_increase", metric_params=OCCLUSION,
                          model=model)
            drops = drop.groupby(["method", "variant"])["value"].mean()
            rises = rise.groupby(["method", "variant"])["value"].mean()
            for method in METHODS:
                if (method, "s") not in drops.index or (method, "b") not in drops.index:
                    continue  # not run (e.g. --quick, --method)
                s, b = drops[(method, "s")], drops[(method, "b")]
                rows = drop[drop["method"] == method]
                n = rows["image_id"].nunique()
                diff = paired_difference(rows[rows["variant"] == "s"],
                                         rows[rows["variant"] == "b"])
                # it holds when the interval of s − b lies above 0: not on noise
                holds = None if math.isnan(diff.mean) else diff.sign > 0
                evidence = (f"confidence drop (%) when the subject (s) / the background (b) is "
                            f"occluded: s {s:.1f} vs b {b:.1f}; s − b per image (points) "
                            f"{diff.text(1)}{_SIGN_TEXT[diff.sign]}")
                if (method, "s") in rises.index and (method, "b") in rises.index:
                    evidence += (f"; confidence increase (% of images): b {rises[(method, 'b')]:.1f}"
                                 f" vs s {rises[(method, 's')]:.1f}")
                evidence += f"; {n} images"
                out.append(finding_row(self.name, f"subject vs background: {method}",
                                       pub["subject vs background"], holds, model, evidence))
        pairs = [(p, o) for p, o in self.pairs(models) if o is not None and not math.isnan(
            miou.get(o, math.nan))]
        family = ", ".join(o for _, o in pairs)
        if len(pairs) < 2:
            out.append(finding_row(self.name, "mIoU by backbone", pub["mIoU by backbone"], None,
                                   family, "needs the mIoU of at least two paired models"))
        else:
            values = [miou[o] for _, o in pairs]
            rising = all(b > a for a, b in zip(values, values[1:], strict=False))
            evidence = "GradCAM mIoU (%) in the paired order: " + ", ".join(
                f"{o} (for {p}) {miou[o]:.1f}" for p, o in pairs)
            out.append(finding_row(self.name, "mIoU by backbone", pub["mIoU by backbone"],
                                   rising, family, evidence))
        return out
