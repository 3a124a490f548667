"""Attributions of a batch, stored or computed (each image timed alone), the input-independence
probe, and the ``attribute`` job of one model."""

from __future__ import annotations

import time
import warnings
import weakref
from typing import Any

import numpy as np

from tfxai.attribution.base import Attributer
from tfxai.models import Backbone
from tfxai.pipeline.batches import (
    DoneCheck,
    ModelJob,
    Prepared,
    batch_loop,
    error_row,
)
from tfxai.pipeline.config import RunConfig, RunSummary
from tfxai.pipeline.session import Stage
from tfxai.results import ResultsDir, ResultsWriteError

__all__ = ["InputIndependenceWarning", "compute_attributions", "probe_image", "INDEPENDENCE_ATOL", "input_independent", "check_input_dependence", "store_params", "attribute_model", "attributions_done"]


class InputIndependenceWarning(UserWarning):
    """A method gave identical maps for two different images explained for the same class."""


def compute_attributions(
    cfg: RunConfig, bb: Backbone, att: Attributer, prep: Prepared, positions: np.ndarray,
    rd: ResultsDir, summary: RunSummary, load: bool = True,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Raw attributions and per-image seconds for ``prep.idx[positions]``: stored or computed.

    Missing ones are computed one image per call, each timed on its own, so ``seconds`` is the
    attribution time of that image (on CPU as fast as one batched call: methods batch their own
    work — steps, samples, perturbations — per image). An attributer's first call in a process
    traces its compiled functions; it is made once, untimed, on the first image, so that no
    image's ``seconds`` holds the tracing. With ``load=False`` stored ones are only counted and
    missing ones computed; returns None.
    """
    mp = att.method_params_json()
    ids = prep.ids()
    stored, missing = [], []
    for p in positions:
        item = rd.find_attribution(bb.name, bb.weights, att.key, mp, ids[p],
                                   int(prep.targets[p]))
        (stored if item is not None else missing).append((p, item))
    out: dict[int, np.ndarray] = {}
    secs: dict[int, float] = {}
    summary.skipped += len(stored)
    if stored and load:
        arrays = rd.store.load_many([it for _, it in stored])
        for (p, it), a in zip(stored, arrays, strict=True):
            out[int(p)] = a
            secs[int(p)] = it.seconds
    if missing:
        mpos = np.array([p for p, _ in missing])
        raw, seconds = _compute_missing(bb, att, prep, mpos, rd, summary)
        rd.store.put(bb.name, bb.weights, att.key, mp, [ids[p] for p in mpos], raw,
                     prep.targets[mpos], seconds=seconds, run_params=store_params(cfg))
        for p, a, sec in zip(mpos, raw, seconds, strict=True):
            out[int(p)] = a
            secs[int(p)] = sec
        summary.computed += len(mpos)
    if not load:
        return None
    order = [int(p) for p in positions]
    return np.stack([out[p] for p in order]), np.array([secs[p] for p in order])


def _compute_missing(bb: Backbone, att: Attributer, prep: Prepared, mpos: np.ndarray,
                     rd: ResultsDir, summary: RunSummary) -> tuple[np.ndarray, list[float]]:
    """Attributions of ``prep.idx[mpos]``, one image per call, each timed alone; the
    attributer's first call in the process (tracing, untimed) is the input-independence probe."""
    ids = prep.ids()
    probe = None
    if att not in _WARM:  # the first call traces the method's tf.functions: not timed
        # it explains another image for the first image's target: the input-independence probe
        r = int(prep.idx[mpos[0]])
        other, how = probe_image(prep, r)
        x = prep.batch.images[r : r + 1] if other is None else other[None]
        warm = att.attribute(x, prep.targets[mpos[:1]], seeds=prep.seeds[r : r + 1])
        _WARM.add(att)
        if other is not None:
            probe = (warm, how)
    parts, seconds = [], []
    for p in mpos:
        r = int(prep.idx[p])
        t0 = time.perf_counter()
        parts.append(att.attribute(prep.batch.images[r : r + 1], prep.targets[p : p + 1],
                                   seeds=prep.seeds[r : r + 1]))
        seconds.append(time.perf_counter() - t0)
    raw = np.concatenate(parts)
    if probe is not None:
        check_input_dependence(bb, att, raw[:1], probe, ids[mpos[0]],
                               int(prep.targets[mpos[0]]), rd, summary)
    return raw, seconds


#: attributers whose compiled functions are traced (see :func:`compute_attributions`)
_WARM: weakref.WeakSet[Attributer] = weakref.WeakSet()


def probe_image(prep: Prepared, r: int) -> tuple[np.ndarray | None, str]:
    """An image different from batch row ``r`` (another image of the batch, else ``r`` mirrored
    left-right or upside down) and how it was made; (None, "") when there is none (a constant
    image alone in its batch)."""
    images = prep.batch.images
    for j in range(len(images)):
        if j != r and not np.array_equal(images[j], images[r]):
            return images[j], f"image {prep.batch.samples[j].image_id}"
    for axis, name in ((1, "mirrored left-right"), (0, "flipped upside down")):
        flipped = np.flip(images[r], axis=axis)
        if not np.array_equal(flipped, images[r]):
            return np.ascontiguousarray(flipped), f"image {prep.batch.samples[r].image_id} {name}"
    return None, ""


#: maps (scaled to max |map| = 1) that differ by at most this everywhere are identical
INDEPENDENCE_ATOL = 1e-4


def input_independent(att: Attributer, raw_a: np.ndarray, raw_b: np.ndarray,
                      atol: float = INDEPENDENCE_ATOL) -> bool:
    """True when the maps of two raw attributions (each (1, H, W[, C])) are identical: equal to
    ``atol`` after each is scaled to max |map| = 1 (the method's map convention otherwise)."""
    maps = [np.asarray(att.to_map(np.asarray(a), scale="max"), np.float64) for a in (raw_a, raw_b)]
    if maps[0].shape != maps[1].shape or not all(np.isfinite(m).all() for m in maps):
        return False
    return bool(np.max(np.abs(maps[0] - maps[1]), initial=0.0) <= atol)


def check_input_dependence(bb: Backbone, att: Attributer, raw: np.ndarray,
                            probe: tuple[np.ndarray, str], image_id: str, target: int,
                            rd: ResultsDir, summary: RunSummary) -> None:
    """Warn (and record in runs.jsonl) when the probe's map equals the first image's map."""
    other, how = probe
    if not input_independent(att, raw, other):
        return
    zero = not np.any(np.asarray(raw))
    message = (
        f"{att.key} on {bb.name}: the attribution does not depend on the input: image {image_id} "
        f"and {how}, both explained for class {target}, give identical maps"
        + (" (both all-zero)" if zero else "")
        + ". Its scores describe the method and the model, not the image (e.g. deconvnet on a "
        "network without max-pooling has no input-dependent switch)."
    )
    warnings.warn(message, InputIndependenceWarning, stacklevel=2)
    summary.warnings.append(message)
    summary.notes.append(message)
    rd.log_run({"command": "warning", "warning": "input_independent", "model": bb.name,
                "weights": bb.weights, "method": att.key,
                "method_params": att.method_params_json(), "image_id": image_id,
                "probe": how, "target": target, "all_zero": zero, "message": message})


def store_params(cfg: RunConfig) -> dict[str, Any]:
    return {"resize": cfg.resize, "target": cfg.target, "seed": cfg.seed}


def attribute_model(job: ModelJob) -> bool:
    """Predictions and attributions of one model over the samples; True when interrupted."""
    cfg, bb, atts, rd, summary = job.cfg, job.bb, job.atts, job.rd, job.summary

    def work(name: str, att: Attributer, prep: Prepared, errors: list, stage: Stage) -> None:
        stage(name, "attribute")
        try:
            compute_attributions(cfg, bb, att, prep, np.arange(len(prep.idx)), rd, summary, load=False)
        except ResultsWriteError:
            raise
        except Exception as exc:  # noqa: BLE001 - recorded per image, run goes on
            errors.extend(error_row(prep.batch.samples[i], "attribute", bb.name,
                                     f"{type(exc).__name__}: {exc}", name) for i in prep.idx)

    return batch_loop(job, "attribute", rd.predictions_of(bb.name, bb.weights),
                      attributions_done(rd, bb, atts), len(atts), work)


def attributions_done(rd: ResultsDir, bb: Backbone, atts: dict[str, Attributer]) -> DoneCheck:
    """Has an image the attributions of every method for its target (as ``compute_attributions``)?"""
    keys = [(att.key, att.method_params_json()) for att in atts.values()]

    def done(image_id: str, target: int) -> bool:
        return all(rd.find_attribution(bb.name, bb.weights, key, mp, image_id, target)
                   is not None for key, mp in keys)

    return done
