"""Resume fast path: a re-run loads and predicts only the images with work left.

A complete folder is skipped without loading an image or calling the model; a folder cut after
its first batch loads only the other batches and ends equal to a one-shot run; the SSIM data
range L of a resumed ``ssim_augmentation`` is still computed over all the images.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_pipeline import _noise_images, _rows

from tfxai.evaluation.registry import get_metric
from tfxai.pipeline import RunConfig, Session, run_local
from tfxai.results import AttributionStore
from tfxai.run import run_attribute, run_evaluate

#: columns of scores.csv that are timings: they differ between any two runs
TIMINGS = ("seconds", "metric_seconds")


class _Cut(Exception):
    """Raised by the batch hook: the run dies after the batch just written."""


@pytest.fixture
def calls(monkeypatch) -> dict:
    """Records the image ids loaded from disk and counts the model's prediction calls."""
    from tfxai.data import dataset
    from tfxai.models import Backbone

    seen: dict = {"loads": [], "predict": 0}
    real_load, real_predict = dataset.load_image, Backbone.predict_logits

    def load(path, *args, **kwargs):
        seen["loads"].append(Path(path).stem)
        return real_load(path, *args, **kwargs)

    def predict(self, images, batch_size=32):
        seen["predict"] += 1
        return real_predict(self, images, batch_size)

    monkeypatch.setattr(dataset, "load_image", load)
    monkeypatch.setattr(Backbone, "predict_logits", predict)
    return seen


def _reset(calls: dict) -> None:
    calls["loads"].clear()
    calls["predict"] = 0


def _files(out: Path) -> dict[str, bytes]:
    """Every file of a results folder but the run log, by relative path."""
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and p.name != "runs.jsonl"}


def _attributions(out: Path) -> dict[tuple, tuple[int, np.ndarray]]:
    store = AttributionStore(out / "attributions")
    return {key: (item.target, store.load(item)) for key, item in store.index().items()}


def _assert_same_results(out: Path, ref: Path) -> None:
    """Same predictions (byte for byte), attributions and scores (timings aside) and curves."""
    assert (out / "predictions.csv").read_bytes() == (ref / "predictions.csv").read_bytes()
    got, want = _attributions(out), _attributions(ref)
    assert got.keys() == want.keys() and want
    for key, (target, arr) in want.items():
        assert got[key][0] == target
        np.testing.assert_array_equal(got[key][1], arr)
    for name in ("scores.csv", "curves.csv"):
        strip = lambda rows: [{k: v for k, v in r.items() if k not in TIMINGS}  # noqa: E731
                              for r in rows]
        assert strip(_rows_or_none(out / name)) == strip(_rows_or_none(ref / name)), name


def _rows_or_none(path: Path) -> list[dict[str, str]]:
    return _rows(path) if path.exists() else []


def _cut_after(batch: int):
    def hook(model: str, n: int) -> None:
        if n == batch:
            raise _Cut
    return hook


def _run(cfg: RunConfig, command: str):
    return (run_attribute if command == "attribute" else run_evaluate)(cfg)


# --------------------------------------------------------------------------------------- complete


def test_attribute_on_a_complete_folder_loads_nothing(tiny_cnn_file, tmp_path, calls):
    folder = _noise_images(tmp_path / "imgs", 5, seed=3)
    cfg = RunConfig(models=[str(tiny_cnn_file)], methods=["saliency", "gradcam"], images=folder,
                    out=tmp_path / "r", batch_size=2, progress=False)
    first = run_attribute(cfg)
    assert first.computed == 10 and sorted(calls["loads"]) == [f"im{i:02d}" for i in range(5)]
    assert calls["predict"] == 3
    before = _files(cfg.out)
    _reset(calls)
    second = run_attribute(cfg)
    assert calls == {"loads": [], "predict": 0}
    assert (second.computed, second.skipped, second.errors) == (0, 10, 0)
    assert _files(cfg.out) == before


def test_evaluate_on_a_complete_folder_loads_nothing(tiny_cnn_file, image_dir, tmp_path, calls):
    """Including box_iou's two variants, deletion's curves and model_randomisation's
    model-dependent variants (spearman@<layer>, ssim@<layer>)."""
    cfg = RunConfig(models=[str(tiny_cnn_file)], methods=["saliency", "gradcam"],
                    metrics=["box_iou", "deletion", "model_randomisation"], images=image_dir,
                    annotations=image_dir, out=tmp_path / "r", batch_size=4, progress=False,
                    metric_params={"deletion": {"steps": 4}, "model_randomisation": {"steps": 1}})
    first = run_evaluate(cfg)
    assert first.errors == 0 and first.rows == 6 * 2 * (2 + 1 + 2)
    assert calls["loads"] and calls["predict"]
    before = _files(cfg.out)
    _reset(calls)
    second = run_evaluate(cfg)
    assert calls == {"loads": [], "predict": 0}
    assert (second.computed, second.rows, second.errors) == (0, 0, 0)
    assert second.skipped == 6 * 2 * 3  # images × methods × metrics, as without the fast path
    assert _files(cfg.out) == before


# --------------------------------------------------------------------------------------- partial


@pytest.mark.parametrize("command", ["attribute", "evaluate"])
def test_only_the_batches_left_are_loaded(tiny_cnn_file, tmp_path, calls, command):
    folder = _noise_images(tmp_path / "imgs", 7, seed=4)
    ids = [f"im{i:02d}" for i in range(7)]
    cfg = lambda out: RunConfig(  # noqa: E731
        models=[str(tiny_cnn_file)], methods=["saliency", "gradcam"], images=folder,
        metrics=["deletion"] if command == "evaluate" else [], out=out, batch_size=3,
        progress=False, metric_params={"deletion": {"steps": 4}} if command == "evaluate" else {})
    _run(cfg(tmp_path / "ref"), command)

    cut = cfg(tmp_path / "cut")
    with pytest.raises(_Cut):
        run_local(cut, command, on_batch=_cut_after(0))
    assert [r["image_id"] for r in _rows(cut.out / "predictions.csv")] == ids[:3]
    _reset(calls)
    summary = _run(cut, command)
    assert calls["loads"] == ids[3:]
    if command == "attribute":  # (deletion calls the model too)
        assert calls["predict"] == 2
    assert summary.computed == 4 * 2 and summary.errors == 0
    assert summary.skipped == 3 * 2  # batch 0: images × methods (× 1 metric)
    _assert_same_results(cut.out, tmp_path / "ref")


def test_ssim_data_range_of_a_resumed_run_is_over_all_images(tiny_cnn_file, tmp_path, calls):
    """The dataset pass still reads every image when work is left; its L does not change."""
    folder = _noise_images(tmp_path / "imgs", 6, seed=5)
    ids = [f"im{i:02d}" for i in range(6)]
    cfg = lambda out: RunConfig(  # noqa: E731
        models=[str(tiny_cnn_file)], methods=["saliency"], metrics=["ssim_augmentation"],
        images=folder, out=out, batch_size=2, progress=False)
    ref = cfg(tmp_path / "ref")
    run_evaluate(ref)

    # cut after the batch holding the largest |map|: a statistic over the batches left would
    # differ from the one over all images
    session = Session(ref)
    att = session.attributers(session.backbone(str(tiny_cnn_file)))["saliency"]
    metric = get_metric("ssim_augmentation")
    stored = _attributions(ref.out)
    per_batch = [metric.dataset_statistic(att, np.stack([stored[k][1] for k in sorted(stored)
                                                         if k[-1] in ids[i:i + 2]]))
                 for i in range(0, 6, 2)]
    top = int(np.argmax(per_batch))
    if top == len(per_batch) - 1:  # keep a batch after the cut
        pytest.fail(f"the largest |map| is in the last batch: {per_batch}")
    assert metric.combine_statistics(per_batch[top + 1:]) < max(per_batch)

    cut = cfg(tmp_path / "cut")
    with pytest.raises(_Cut):
        run_local(cut, "evaluate", on_batch=_cut_after(top))
    _reset(calls)
    summary = run_evaluate(cut)
    left = ids[2 * (top + 1):]
    assert calls["loads"] == ids + left  # dataset pass over all, then only the batches left
    assert summary.rows == len(left) * len(metric.variants)

    def data_range(out: Path) -> list[float]:
        lines = [json.loads(x) for x in (out / "runs.jsonl").read_text().splitlines()]
        return [x["statistic"] for x in lines if x["command"] == "evaluate.dataset_pass"]

    assert data_range(ref.out) == [max(per_batch)]
    assert data_range(cut.out) == [max(per_batch)] * 2  # the cut run, then the resumed one
    _assert_same_results(cut.out, ref.out)

    # complete now: the dataset pass is skipped too
    _reset(calls)
    run_evaluate(cut)
    assert calls == {"loads": [], "predict": 0}
    assert len(data_range(cut.out)) == 2


# --------------------------------------------------------------------------------------- errors


def test_a_broken_image_alone_is_tried_again(tiny_cnn_file, image_dir, tmp_path, calls):
    """A failed image has no prediction row: the re-run loads it alone, records its error again
    (as before) and skips the rest of its batch."""
    (image_dir / "img2x.png").write_bytes(b"")
    cfg = RunConfig(models=[str(tiny_cnn_file)], methods=["saliency"], images=image_dir,
                    out=tmp_path / "r", batch_size=4, progress=False)
    first = run_attribute(cfg)
    assert first.errors == 1 and first.computed == 6
    before = _files(cfg.out)
    _reset(calls)
    second = run_attribute(cfg)
    assert calls == {"loads": ["img2x"], "predict": 0}
    assert (second.computed, second.skipped, second.errors) == (0, 6, 1)
    errors = _rows(cfg.out / "errors.csv")
    assert [(e["image_id"], e["stage"]) for e in errors] == [("img2x", "load")] * 2
    assert {k: v for k, v in _files(cfg.out).items() if k != "errors.csv"} == {
        k: v for k, v in before.items() if k != "errors.csv"}


def test_label_target_without_label_is_recorded_without_loading(tiny_cnn_file, image_dir,
                                                                 tmp_path, calls):
    """With --target label, an image without a label is done once predicted: a re-run records
    its target error again (as before) without loading it."""
    from PIL import Image

    Image.new("RGB", (40, 30), (200, 10, 10)).save(image_dir / "img9.png")  # no XML: no label
    cfg = RunConfig(models=[str(tiny_cnn_file)], methods=["gradcam"], images=image_dir,
                    annotations=image_dir, target="label", out=tmp_path / "r", batch_size=4,
                    progress=False)
    first = run_attribute(cfg)
    assert (first.computed, first.errors) == (6, 1)
    _reset(calls)
    second = run_attribute(cfg)
    assert calls == {"loads": [], "predict": 0}
    assert (second.computed, second.skipped, second.errors) == (0, 6, 1)
    errors = _rows(cfg.out / "errors.csv")
    assert [(e["image_id"], e["stage"], e["error"]) for e in errors] == [
        ("img9", "target", "no label (target: label)")] * 2
