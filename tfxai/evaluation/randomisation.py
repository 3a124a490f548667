"""Model-parameter randomisation test [Adebayo, Gilmer, Muelly, Goodfellow, Hardt & Kim 2018, "Sanity
Checks for Saliency Maps"].

The weights of the model are re-initialised cascading from the top (output) layer down; after each step
the same attribution method is re-run on the randomised model and its map is compared with the map of
the trained model by Spearman rank correlation and SSIM. A method that passes the sanity check gives
maps that lose their similarity quickly (lower is better).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import rankdata

from tfxai.attribution.base import Param, above
from tfxai.backbone import weighted_layers
from tfxai.backend import keras
from tfxai.evaluation.base import EvalContext, MetricOutput, RerunMetric, register_metric
from tfxai.evaluation.robustness import ssim

__all__ = ["ModelRandomisation", "weighted_layers", "spearman_rows"]

def spearman_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman rank correlation of each pair of rows of (N, D) arrays (average ranks for ties);
    NaN where a row is constant."""
    ra = rankdata(a, axis=1)
    rb = rankdata(b, axis=1)
    ra -= ra.mean(axis=1, keepdims=True)
    rb -= rb.mean(axis=1, keepdims=True)
    den = np.sqrt((ra**2).sum(axis=1) * (rb**2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (ra * rb).sum(axis=1) / np.where(den > 0, den, 1.0), np.nan)


@dataclass
class _Randomised:
    """The re-initialised layers of a backbone (paths, top first) with the fixed random weights
    that replace them."""

    layers: list[str]
    random_weights: dict[str, list[np.ndarray]]


@register_metric
class ModelRandomisation(RerunMetric):
    """Cascading model-parameter randomisation [Adebayo et al. 2018] (lower similarity is better).

    * Layers: the ``steps`` top-most layers with a kernel (:func:`weighted_layers`: Dense and
      convolutions, from the output down; batch-norm and other layers keep their weights). Step k
      re-initialises layers 1..k (cascading).
    * Re-initialisation (``init``): ``"layer"`` (default) draws every weight of the layer from its
      own Keras initializer (``kernel_initializer``, ``bias_initializer``, ...) seeded with
      ``seed``; ``"normal"`` draws N(0, s²) with s the standard deviation of the trained weight
      (zeros stay zeros). The random weights are fixed per metric instance, so every batch sees the
      same randomised models.
    * The weights are replaced in place, the same method is re-run on the same images, targets
      and seeds, and the trained weights are put back when the batch is done (also when it
      fails): no copy of the model is made, and compiled methods read the new weights.
    * Similarity, per step: ``spearman@<layer>``, the Spearman rank correlation, and
      ``ssim@<layer>``, SSIM (11×11 window, K1 = 0.01, K2 = 0.03, data range 1), both between the
      maps of the trained and randomised models, scaled to [0, 1] with ``scale="minmax"`` (the
      method's default channel reduction and absolute value).

    **Variants depend on the model**: the class attribute ``variants`` is a placeholder;
    :meth:`variants_for` gives ``spearman@<layer>``, ``ssim@<layer>`` for its steps on a
    backbone. Write one row per key of ``MetricOutput.values``.
    """

    name = "model_randomisation"
    summary = "Spearman/SSIM of maps of the trained vs top-down re-initialised model [Adebayo 2018]"
    variants = ("spearman@<layer>", "ssim@<layer>")
    params_spec = {
        "steps": Param(3, int, "number of layers re-initialised, cascading from the top",
                       **above(0)),
        "init": Param("layer", str, "re-initialisation: the layer's own initializer or a normal",
                      choices=("layer", "normal")),
    }

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._state: _Randomised | None = None
        self._state_key: tuple[int, int] | None = None

    # ------------------------------------------------------------------ model surgery
    def layers_for(self, backbone: Any) -> list[str]:
        """The re-initialised layers, top first."""
        names = backbone.weighted_layers()[::-1]
        if not names:
            raise ValueError(f"model_randomisation: model {backbone.name!r} has no layer with a kernel")
        return names[: self.params["steps"]]

    def variants_for(self, backbone: Any) -> tuple[str, ...]:
        """``spearman@<layer>`` then ``ssim@<layer>`` for each step, top layer first."""
        layers = self.layers_for(backbone)
        return tuple(f"spearman@{n}" for n in layers) + tuple(f"ssim@{n}" for n in layers)

    def _random_weights(self, layer: keras.layers.Layer, step: int) -> list[np.ndarray]:
        base = int(self.params.get("seed", 0))
        out = []
        for j, w in enumerate(layer.weights):
            value = w.numpy()
            seed = int(np.random.default_rng([base, step, j]).integers(2**31 - 1))
            if self.params["init"] == "normal":
                std = float(value.std())
                rng = np.random.default_rng(seed)
                out.append((rng.standard_normal(value.shape) * std).astype(value.dtype))
                continue
            attr = w.name.split("/")[-1].split(":")[0]  # kernel, bias, depthwise_kernel, ...
            init = getattr(layer, f"{attr}_initializer", None)
            if init is None:
                rng = np.random.default_rng(seed)
                out.append((rng.standard_normal(value.shape) * float(value.std())).astype(value.dtype))
                continue
            cfg = init.get_config()
            if "seed" in cfg:
                cfg["seed"] = seed
            fresh = type(init).from_config(cfg)
            out.append(np.asarray(fresh(value.shape, dtype=w.dtype)).astype(value.dtype))
        return out

    def _prepare(self, backbone: Any) -> _Randomised:
        key = id(backbone)
        if self._state is not None and self._state_key == key:
            return self._state
        layers = self.layers_for(backbone)
        rand = {n: self._random_weights(backbone.layer_at(n), k) for k, n in enumerate(layers)}
        self._state = _Randomised(layers, rand)
        self._state_key = key
        return self._state

    # ------------------------------------------------------------------ evaluation
    def _evaluate(self, ctx: EvalContext) -> MetricOutput:
        state = self._prepare(ctx.backbone)
        ref = ctx.maps(scale="minmax").reshape(len(ctx), -1).astype(np.float64)
        out = MetricOutput(values={}, notes={})
        for k, name in enumerate(state.layers):  # cascading: the layers above stay random
            random = {n: state.random_weights[n] for n in state.layers[: k + 1]}
            with ctx.backbone.weights_replaced(random):
                raw = ctx.attributer.attribute(ctx.images, ctx.targets, seeds=ctx.seeds)
            self._compare(ctx, ref, ctx.attributer.to_map(raw, scale="minmax"), name, out)
        return out

    @staticmethod
    def _compare(ctx: EvalContext, ref: np.ndarray, new_maps: np.ndarray, name: str,
                 out: MetricOutput) -> None:
        n_img = len(ctx)
        h, w = ctx.images.shape[1:3]
        new = new_maps.reshape(n_img, -1).astype(np.float64)
        finite = np.isfinite(new).all(axis=1)
        rho = np.full(n_img, np.nan)
        sim = np.full(n_img, np.nan)
        if finite.any():
            rho[finite] = spearman_rows(ref[finite], new[finite])
            sim[finite] = ssim(ref[finite].reshape(-1, h, w), new[finite].reshape(-1, h, w), 1.0)
        bad = "non-finite attribution on the randomised model"
        out.values[f"spearman@{name}"] = rho
        out.notes[f"spearman@{name}"] = [
            bad if not f else ("constant map: rank correlation undefined" if np.isnan(r) else "")
            for f, r in zip(finite, rho, strict=True)
        ]
        out.values[f"ssim@{name}"] = sim
        out.notes[f"ssim@{name}"] = ["" if f else bad for f in finite]
