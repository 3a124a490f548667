"""Shapley-value attributions through the ``shap`` package (0.49.1).

* :class:`Shap` [Lundberg & Lee 2017, "A Unified Approach to Interpreting Model Predictions"]:
  ``shap.GradientExplainer`` (expected gradients [Erion et al. 2021]) at the input or at an inner
  layer, or ``shap.PartitionExplainer`` with an image blur masker as a model-agnostic option.

The background set must not contain evaluated images (their own attributions would be
integrated against themselves): :class:`Shap` refuses a background whose image content equals an
evaluated image, and :func:`check_background_overlap` lets a pipeline compare ids or paths before
anything is computed.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from tfxai.attribution.backgrounds import load_background_folder, synthetic_background
from tfxai.attribution.base import Attributer, Param, above, register
from tfxai.backend import keras

__all__ = [
    "Shap",
    "BackgroundOverlapError",
    "check_background_overlap",
    "image_hashes",
    "synthetic_background",
    "normalise_gradient_output",
]

EXPLAINERS = ("gradient", "partition")


class BackgroundOverlapError(ValueError):
    """The SHAP background shares images with the evaluated set."""


# --------------------------------------------------------------------------------------- background


def image_hashes(images: np.ndarray) -> list[str]:
    """SHA-1 of each image's float32 content (identical pixels ⇔ identical hash)."""
    arr = np.ascontiguousarray(np.asarray(images, dtype=np.float32))
    return [hashlib.sha1(a.tobytes()).hexdigest() for a in arr]


def _file_hash(path: Path) -> str:
    h = hashlib.sha1()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _identity_keys(item: Any) -> set[str]:
    """Keys under which an id or path is compared: the string, the resolved path and the file's
    content hash when it names an existing file, and the stem (image id without folder/suffix)."""
    s = os.fspath(item) if isinstance(item, os.PathLike) else str(item)
    keys = {f"id:{s}", f"id:{Path(s).with_suffix('').as_posix()}"}
    p = Path(s)
    if p.is_file():
        keys.add(f"path:{p.resolve()}")
        keys.add(f"sha1:{_file_hash(p)}")
    return keys


def check_background_overlap(
    background_ids: Iterable[Any], evaluated_ids: Iterable[Any]
) -> None:
    """Raise :class:`BackgroundOverlapError` when a background image is also evaluated.

    Items are image ids or paths. Two items match when their strings (with or without a file
    suffix) are equal, when they resolve to the same file, or when the files have the same bytes.
    """
    bg = {}
    for b in background_ids:
        for k in _identity_keys(b):
            bg.setdefault(k, b)
    clashes = sorted({str(bg[k]) for e in evaluated_ids for k in _identity_keys(e) if k in bg})
    if clashes:
        shown = ", ".join(clashes[:5]) + (" …" if len(clashes) > 5 else "")
        raise BackgroundOverlapError(
            f"shap: parameter 'background' shares {len(clashes)} image(s) with the evaluated "
            f"images ({shown}); the background must come from a different folder"
        )


# --------------------------------------------------------------------------------------- outputs


def normalise_gradient_output(values: Any, x_ndim: int) -> np.ndarray:
    """The attributions of the first explained output from ``GradientExplainer.shap_values``.

    shap's conventions, which changed over versions:

    * with ``ranked_outputs``, a pair ``(values, indexes)`` is returned;
    * shap ≥ 0.45 (0.49.1 here) stacks the explained outputs on a **last** axis,
      ``(N, *shape, n_outputs)``;
    * older versions return a **list** with one ``(N, *shape)`` array per output;
    * a model with a single scalar output gives ``(N, *shape)`` without the output axis.

    Args:
        values: what ``shap_values`` returned.
        x_ndim: ndim of the explained input ``(N, *shape)``.

    Returns:
        ``(N, *shape)`` for the first (here: the only) explained output.
    """
    if isinstance(values, tuple) and len(values) == 2:
        values = values[0]
    if isinstance(values, list):
        if not values:
            raise ValueError("shap returned an empty list of attributions")
        values = values[0]
    arr = np.asarray(values)
    if arr.ndim == x_ndim + 1:
        return arr[..., 0]
    if arr.ndim == x_ndim:
        return arr
    raise ValueError(f"unexpected shap output shape {arr.shape} for an input of ndim {x_ndim}")


def _restore_numpy_state(fn):
    """shap's GradientExplainer reseeds numpy's global generator: give the caller its state back."""

    def wrapped(*args, **kwargs):
        state = np.random.get_state()  # noqa: NPY002 - shap reseeds the global generator
        try:
            return fn(*args, **kwargs)
        finally:
            np.random.set_state(state)  # noqa: NPY002

    return wrapped


# --------------------------------------------------------------------------------------- method


@register
class Shap(Attributer):
    """SHAP through the ``shap`` package [Lundberg & Lee 2017].

    ``explainer="gradient"`` (default): ``shap.GradientExplainer`` (expected gradients) with
    ``n_samples`` samples (shap's ``nsamples``), each a random background image and a random point on the line to the
    input; the explained output is the target's **pre-softmax logit** (``ranked_outputs`` =
    the target, ``output_rank_order="custom"``), seeded per image through ``rseed``.

    * ``layer=None``: at the input; raw attribution (N, H, W, 3) in 0..255 input space.
    * ``layer="<name>"``: at that layer's activations (images and background mapped through the
      network up to it, then ``shap.GradientExplainer`` on the layer → logits sub-model); the
      (h, w, k) result is summed over k and upsampled bilinearly to (N, H, W)
      (``resolution = "layer"``).

    ``explainer="partition"``: ``shap.PartitionExplainer`` with
    ``shap.maskers.Image(masker, input_shape)`` (default ``"blur(16,16)"``) and ``max_evals``
    model evaluations per image; model-agnostic, (N, H, W, 3). shap breaks ties in its Owen-value
    queue with ``np.random.randn()`` from numpy's global generator: it is seeded with the image's
    seed (and the caller's state restored).

    Background (``gradient`` only): a folder (``background=DIR``; ``background_size`` images,
    a seeded choice, loaded with ``tfxai.data`` and resized with ``background_resize``), a numpy
    array (Python API), or by default ``synthetic``: ``background_size`` seeded smooth random
    colour fields (:func:`synthetic_background`), which can never overlap the evaluated images.
    A background image with the same content as an evaluated image is refused
    (:class:`BackgroundOverlapError`).
    """

    name = "shap"
    summary = ("expected-gradient SHAP (shap.GradientExplainer, 200 samples, 50 background "
               "images) at the input or a layer; partition/blur option [Lundberg 2017]")
    stochastic = True
    params_spec = {
        "explainer": Param("gradient", str, "gradient or partition", choices=EXPLAINERS),
        "layer": Param(None, str, "inner layer for GradientExplainer (default: the input)",
                       nullable=True),
        "n_samples": Param(200, int, "GradientExplainer samples per image (shap: nsamples)",
                          **above(0)),
        "background": Param(None, object, "folder of background images, an array, or "
                            "'synthetic' (default)", nullable=True),
        "background_size": Param(50, int, "number of background images",
                                 **above(0)),
        "background_seed": Param(0, int, "seed of the background choice / synthetic fields"),
        "background_resize": Param("squash", str, "resize of background images",
                                   choices=("squash", "crop")),
        "max_evals": Param(500, int, "PartitionExplainer model evaluations per image",
                           check=lambda v: v > 2, check_doc="must be > 2"),
        "masker": Param("blur(16,16)", str, "shap.maskers.Image mask value (partition)"),
        "model_batch_size": Param(25, int, "images per shap model/gradient batch",
                                  **above(0), hashed=False),
    }

    # ------------------------------------------------------------------ setup
    def _setup(self) -> None:
        p = self.params
        if p["explainer"] == "partition" and p["layer"] is not None:
            raise ValueError("shap: parameter 'layer' applies to explainer='gradient' only")
        self.resolution = "layer" if p["layer"] else "input"
        self.background: np.ndarray | None = None
        self.background_ids: list[str] = []
        self._bg_hashes: set[str] = set()
        self._explainer = None
        self._to_layer = None
        if p["explainer"] == "gradient":
            self._load_background()

    def _load_background(self) -> None:
        p = self.params
        bg = p["background"]
        size = self.backbone.input_size
        if bg is None or (isinstance(bg, str) and bg == "synthetic"):
            self.background = synthetic_background(p["background_size"], size,
                                                   p["background_seed"])
            p["background"] = "synthetic"
        elif isinstance(bg, (str, os.PathLike)):
            path = Path(bg)
            if not path.exists():
                raise ValueError(
                    f"shap: parameter 'background': folder {str(path)!r} does not exist "
                    "(give a folder of images not in the evaluated set, e.g. "
                    "background=DIR, or leave it unset for the synthetic default)"
                )
            self.background, self.background_ids = load_background_folder(
                path, size, p["background_size"], seed=p["background_seed"],
                resize=p["background_resize"], owner="shap")
            p["background"] = str(path.resolve())
        else:
            arr = np.asarray(bg, dtype=np.float32)
            if arr.ndim != 4 or tuple(arr.shape[1:]) != self.backbone.input_shape:
                raise ValueError(
                    f"shap: parameter 'background' must be (N, {size[0]}, {size[1]}, 3) images "
                    f"in 0..255, got shape {arr.shape}"
                )
            self.background = arr
            digest = hashlib.sha1(np.ascontiguousarray(arr).tobytes()).hexdigest()[:16]
            p["background"] = f"array:{len(arr)}:{digest}"
        self._bg_hashes = set(image_hashes(self.background))

    def _gradient_explainer(self):
        if self._explainer is None:
            import shap

            bb = self.backbone
            layer = self.params["layer"]
            if layer is None:
                inp = keras.Input(bb.input_shape, name="rgb_0_255")
                pre = keras.layers.Lambda(bb.preprocess, name="preprocess")(inp)
                model = keras.Model(inp, bb.logit_model(pre), name=f"{bb.name}_shap")
                data = self.background
            else:
                self._to_layer = bb.layer_model(layer)  # validates the name
                try:
                    model = keras.Model(bb.find_layer(layer).output, bb.logit_model.outputs[0],
                                        name=f"{bb.name}_head")
                except Exception as exc:  # noqa: BLE001 - Keras raises ValueError/KeyError
                    raise ValueError(
                        f"shap: parameter 'layer': cannot split {bb.name!r} at {layer!r} "
                        f"(the layers after it also read earlier tensors: {exc}); "
                        "choose a layer every later path goes through"
                    ) from None
                if len(model.inputs[0].shape) != 4:
                    raise ValueError(f"shap: layer {layer!r} does not have a 4-D output")
                data = self._layer_acts(self.background)
            self._explainer = shap.GradientExplainer(
                model, data, batch_size=self.params["model_batch_size"])
        return self._explainer

    def _layer_acts(self, images: np.ndarray) -> np.ndarray:
        bs = self.params["model_batch_size"]
        outs = [self._to_layer(self.backbone.preprocess(images[i : i + bs]),
                               training=False)[0].numpy()
                for i in range(0, len(images), bs)]
        return np.concatenate(outs)

    # ------------------------------------------------------------------ attribution
    def check_overlap(self, images: np.ndarray) -> None:
        """Refuse evaluated images whose content equals a background image."""
        if not self._bg_hashes:
            return
        hits = [i for i, h in enumerate(image_hashes(images)) if h in self._bg_hashes]
        if hits:
            raise BackgroundOverlapError(
                f"shap: parameter 'background' contains {len(hits)} of the evaluated images "
                f"(batch positions {hits}); use background images that are not evaluated"
            )

    @_restore_numpy_state
    def _gradient_one(self, x: np.ndarray, target: int, seed: int) -> np.ndarray:
        # shap calls the Keras model with a list of one tensor, which Keras 3 accepts with a
        # UserWarning about the input structure on every call: it says nothing to the user
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The structure of `inputs` doesn't match")
            explainer = self._gradient_explainer()
            xin = x[None] if self.params["layer"] is None else self._layer_acts(x[None])
            out = explainer.shap_values(
                xin, nsamples=self.params["n_samples"], ranked_outputs=np.array([[target]]),
                output_rank_order="custom", rseed=int(seed) % 2**32,
            )
        vals = normalise_gradient_output(out, xin.ndim)[0]
        if self.params["layer"] is None:
            return vals.astype(np.float32)
        summed = tf.constant(vals.sum(axis=-1)[None], tf.float32)
        return self.upsample(summed).numpy()[0]

    @_restore_numpy_state
    def _partition_one(self, x: np.ndarray, target: int, seed: int) -> np.ndarray:
        import shap

        # shap's Owen-value queue breaks ties with np.random.randn() from the global generator
        np.random.seed(int(seed) % 2**32)  # noqa: NPY002

        if self._explainer is None:
            bs = self.params["model_batch_size"]
            masker = shap.maskers.Image(self.params["masker"], self.backbone.input_shape)
            self._explainer = shap.PartitionExplainer(
                lambda b: self.backbone.predict_logits(np.asarray(b, np.float32), batch_size=bs),
                masker)
        ex = self._explainer(x[None], max_evals=self.params["max_evals"],
                             batch_size=self.params["model_batch_size"], outputs=[target],
                             silent=True)
        vals = np.asarray(ex.values)
        return (vals[0, ..., 0] if vals.ndim == 5 else vals[0]).astype(np.float32)

    def _attribute(self, x: tf.Tensor, targets: tf.Tensor, seeds: np.ndarray) -> np.ndarray:
        xs, ts = x.numpy(), targets.numpy()
        self.check_overlap(xs)
        if self.params["explainer"] == "partition":
            return np.stack([self._partition_one(xs[i], int(ts[i]), int(seeds[i]))
                             for i in range(len(xs))])
        return np.stack([self._gradient_one(xs[i], int(ts[i]), int(seeds[i]))
                         for i in range(len(xs))])

    def check_background_ids(self, evaluated_ids: Sequence[Any]) -> None:
        """:func:`check_background_overlap` of this background's paths against ``evaluated_ids``
        (a no-op for synthetic and array backgrounds, which have no paths)."""
        check_background_overlap(self.background_ids, evaluated_ids)
