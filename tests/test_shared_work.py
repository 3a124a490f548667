"""Work shared across methods and metrics (issue 18, item 3): the perturbed forward passes that do
not depend on the attribution are computed once per batch, and sharing changes no score."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from click.testing import CliRunner
from tfxai.cli.main import main

import tfxai
from tfxai.backend import keras
from tfxai.evaluation.faithfulness import Infidelity
from tfxai.evaluation.robustness import SSIMAugmentation
from tfxai.evaluation.shared import SharedWork, image_digest

L = keras.layers


def _small_cnn(seed: int = 0) -> tfxai.Backbone:
    keras.utils.set_random_seed(seed)
    inp = L.Input((16, 16, 3))
    x = L.Rescaling(1 / 255)(inp)
    x = L.Conv2D(4, 3, padding="same", activation="tanh", name="conv")(x)
    x = L.Flatten()(x)
    out = L.Dense(3)(x)
    return tfxai.load_model(keras.Model(inp, out), output="logits")


def _images(n: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (n, 16, 16, 3)).astype(np.float32)


class _Counting:
    """A backbone proxy counting the images that go through ``target_logits``/``predict``."""

    def __init__(self, bb: tfxai.Backbone) -> None:
        self._bb = bb
        self.images = 0

    def __getattr__(self, name: str):
        return getattr(self._bb, name)

    def predict(self, x, *args, **kwargs):
        self.images += len(x)
        return self._bb.predict(x, *args, **kwargs)


def test_per_image_memo_computes_each_image_once_and_keys_by_content():
    shared = SharedWork()
    x = _images(4)
    calls = []

    def compute(idx):
        calls.append(list(idx))
        return x[idx].sum(axis=(1, 2, 3))

    a = shared.per_image("sum", x, compute, targets=[0, 1, 2, 0])
    # a reordered sub-batch with one new image: only the new one is computed
    y = np.concatenate([x[[2, 0]], _images(1, seed=9)])
    b = shared.per_image("sum", y, compute, targets=[2, 0, 1])
    assert calls == [[0, 1, 2, 3], [2]]
    np.testing.assert_array_equal(b[:2], a[[2, 0]])
    assert (shared.hits, shared.misses) == (2, 5)
    # another target, seed or kind is another entry
    shared.per_image("sum", x[:1], compute, targets=[1])
    shared.per_image("sum", x[:1], compute, targets=[0], seeds=[5])
    shared.per_image("other", x[:1], compute, targets=[0])
    assert shared.misses == 8
    assert image_digest(x[0]) != image_digest(x[0].astype(np.float64))


def test_infidelity_shares_perturbed_passes_across_methods_and_normalisation():
    bb = _small_cnn()
    x, t = _images(3), np.array([0, 1, 2])
    rng = np.random.default_rng(1)
    phi_a, phi_b = rng.normal(size=x.shape), rng.normal(size=x.shape[:3])
    shared = SharedWork()
    metric = Infidelity(n_samples=20)
    va = metric.score(bb, None, x, t, phi_a, seeds=np.arange(3), shared=shared)
    first = shared.misses
    assert first == 2 * 3  # F(x) and F(x − I) per image
    vb = metric.score(bb, None, x, t, phi_b, seeds=np.arange(3), shared=shared)
    raw = Infidelity(n_samples=20, normalize=False)
    vr = raw.score(bb, None, x, t, phi_a, seeds=np.arange(3), shared=shared)
    assert shared.misses == first and shared.hits == 2 * 2 * 3
    # the same values as without sharing, bit for bit
    np.testing.assert_array_equal(va, metric.score(bb, None, x, t, phi_a, seeds=np.arange(3)))
    np.testing.assert_array_equal(vb, metric.score(bb, None, x, t, phi_b, seeds=np.arange(3)))
    np.testing.assert_array_equal(vr, raw.score(bb, None, x, t, phi_a, seeds=np.arange(3)))
    # another σ or another seed draws other perturbations: never shared
    Infidelity(n_samples=20, sigma=0.01).score(bb, None, x, t, phi_a, seeds=np.arange(3),
                                                     shared=shared)
    assert shared.misses == first + 3
    Infidelity(n_samples=20, seed=1).score(bb, None, x, t, phi_a, seeds=np.arange(3),
                                                 shared=shared)
    assert shared.misses == first + 6


def test_ssim_augmentation_gate_is_computed_once_for_all_methods():
    bb = _small_cnn()
    counting = _Counting(bb)
    x, t = _images(2), np.array([0, 1])
    shared = SharedWork()
    metric = SSIMAugmentation(gate=1.0)
    sal = tfxai.get_attributer("saliency", bb)
    cam = tfxai.get_attributer("gradcam", bb, layer="conv")
    out_a = metric.evaluate(counting, sal, x, t, sal.attribute(x, t), seeds=np.arange(2),
                            shared=shared)
    after_first = counting.images
    assert after_first == 2 * (1 + len(metric.variants))  # the batch and each augmentation
    out_b = metric.evaluate(counting, cam, x, t, cam.attribute(x, t), seeds=np.arange(2),
                            shared=shared)
    assert counting.images == after_first  # the second method adds no gate forward pass
    fresh = metric.evaluate(bb, cam, x, t, cam.attribute(x, t), seeds=np.arange(2))
    for v in metric.variants:
        np.testing.assert_array_equal(out_b.values[v], fresh.values[v])
        assert np.isfinite(out_a.values[v]).all()


def _scores(path: Path) -> dict[tuple[str, ...], tuple[str, str]]:
    with (path / "scores.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    return {(r["image_id"], r["method"], r["method_params"], r["metric"], r["metric_params"],
             r["variant"]): (r["value"], r["note"]) for r in rows}


def test_one_run_over_several_methods_writes_the_scores_of_one_run_per_method(
        tiny_cnn_file, image_dir, tmp_path):
    methods = ["saliency", "gradcam", "integrated_gradients"]
    common = ["--model", str(tiny_cnn_file), "--images", str(image_dir), "--metric",
              "infidelity,ssim_augmentation",
              "--param", "ssim_augmentation.gate=1",
              "--batch-size", "3", "--no-progress"]
    runner = CliRunner()
    together = tmp_path / "together"
    res = runner.invoke(main, ["evaluate", "--method", ",".join(methods), "--out", str(together),
                               *common, "--param", "integrated_gradients.steps=8"])
    assert res.exit_code == 0, res.output
    alone: dict[tuple[str, ...], tuple[str, str]] = {}
    for m in methods:
        out = tmp_path / m
        steps = ["--param", "integrated_gradients.steps=8"] if m == "integrated_gradients" else []
        res = runner.invoke(main, ["evaluate", "--method", m, "--out", str(out), *common, *steps])
        assert res.exit_code == 0, res.output
        alone.update(_scores(out))
    shared = _scores(together)
    assert len(shared) == len(alone) >= 6 * len(methods) * 10  # 1 + 9 variants per image
    assert shared == alone
    assert any(v != "" for v, _ in shared.values())


def test_a_run_with_a_dataset_pass_predicts_each_image_once(tiny_cnn_file, image_dir, tmp_path,
                                                             monkeypatch):
    """ssim_augmentation's dataset pass (its data range over all images) predicts every image;
    the scoring pass reuses those predictions instead of predicting again."""
    import tfxai.pipeline.batches as batches
    from tfxai.backbone import Backbone

    seen = {"predict": 0, "pipeline": 0}
    real_predict, real_predictions = Backbone.predict, batches._predictions

    def predict(self, images, *args, **kwargs):
        seen["predict"] += len(images)
        return real_predict(self, images, *args, **kwargs)

    def predictions(*args, **kwargs):
        before = seen["predict"]
        out = real_predictions(*args, **kwargs)
        seen["pipeline"] += seen["predict"] - before
        return out

    monkeypatch.setattr(Backbone, "predict", predict)
    monkeypatch.setattr(batches, "_predictions", predictions)
    res = CliRunner().invoke(main, [
        "evaluate", "--model", str(tiny_cnn_file), "--images", str(image_dir), "--method",
        "saliency,gradcam", "--metric", "ssim_augmentation", "--out", str(tmp_path / "r"),
        "--batch-size", "4", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert seen["pipeline"] == 6  # six images, each predicted once
