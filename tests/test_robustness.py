"""Robustness metrics: max/avg sensitivity and SSIM under augmentations.

Closed forms on tiny Keras models (identity preprocessing, 0..255 input, logits output):
f(x) = w·x has a constant gradient (sensitivity 0); f(x) = ½‖x‖² has gradient x, so
Φ(x + δ) − Φ(x) = δ and max-sensitivity ≤ r·√d with r = 0.02·255 in 0..255 units.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import tfxai
from tfxai.attribution.base import Attributer
from tfxai.backend import keras
from tfxai.evaluation import MetricInputError
from tfxai.evaluation.augment import rotate
from tfxai.evaluation.robustness import SSIMAugmentation, ssim

L = keras.layers
SIZE = 8
D = SIZE * SIZE * 3


def _wrap(model: keras.Model) -> tfxai.Backbone:
    return tfxai.load_model(model, output="logits")


def linear_model(seed: int = 0) -> tfxai.Backbone:
    keras.utils.set_random_seed(seed)
    inp = L.Input((SIZE, SIZE, 3))
    return _wrap(keras.Model(inp, L.Dense(3)(L.Flatten()(inp))))


def lambda_model(fn, size: int = SIZE) -> tfxai.Backbone:
    """Two logits: [fn(x), 0]."""
    inp = L.Input((size, size, 3))
    z = L.Lambda(lambda x: tf.stack([fn(x), tf.zeros_like(fn(x))], axis=1))(inp)
    return _wrap(keras.Model(inp, z))


def half_square_norm() -> tfxai.Backbone:
    return lambda_model(lambda x: 0.5 * tf.reduce_sum(tf.square(x), axis=(1, 2, 3)))


def images(n: int = 2, seed: int = 0, size: int = SIZE) -> np.ndarray:
    return np.random.default_rng(seed).uniform(20, 235, (n, size, size, 3)).astype(np.float32)


class CountingSaliency:
    """Delegates to a real attributer and records each ``attribute`` call's batch size."""

    def __init__(self, inner):
        self.inner = inner
        self.calls: list[int] = []
        self.rerunnable = True
        self.key = inner.key

    def attribute(self, images, targets=None, seeds=None):
        self.calls.append(len(images))
        return self.inner.attribute(images, targets, seeds=seeds)

    def to_map(self, raw, **kw):
        return self.inner.to_map(raw, **kw)


# --------------------------------------------------------------------------------------- sensitivity


@pytest.mark.parametrize("name", ["max_sensitivity", "avg_sensitivity"])
def test_sensitivity_of_gradient_of_linear_model_is_zero(name):
    bb = linear_model()
    x = images(3)
    t = np.array([0, 1, 2])
    att = CountingSaliency(tfxai.get_attributer("saliency", bb))
    raw = att.attribute(x, t)
    att.calls.clear()
    out = tfxai.get_metric(name).evaluate(bb, att, x, t, attributions=raw)
    np.testing.assert_array_equal(out.values[""], 0.0)
    np.testing.assert_array_equal(out.values["relative"], 0.0)
    assert att.calls == [3 * 10]  # all perturbed inputs in ONE batched call


def test_max_sensitivity_of_half_square_norm_is_bounded_by_r_sqrt_d():
    bb = half_square_norm()
    x = images(2)
    t = np.array([0, 0])
    sal = tfxai.get_attributer("saliency", bb)
    raw = sal.attribute(x, t)
    np.testing.assert_allclose(raw, x, rtol=1e-6)  # ∇ ½‖x‖² = x
    metric = tfxai.get_metric("max_sensitivity", radius=0.02, n_samples=10)
    out = metric.evaluate(bb, sal, x, t, attributions=raw, seeds=[3, 4])
    r = 0.02 * 255  # the radius in 0..255 units
    v = out.values[""]
    assert np.all(v > 0) and np.all(v <= r * np.sqrt(D) + 1e-4), v
    # Φ(x+δ) − Φ(x) = δ exactly: the value is the largest ‖δ‖₂ of the seeded draws
    want = [np.linalg.norm(metric.perturbations(s, x.shape[1:]).reshape(10, -1), axis=1).max()
            for s in (3, 4)]
    np.testing.assert_allclose(v, want, rtol=1e-4)
    # ‖δ‖₂ of a uniform draw concentrates at r·√(d/3)
    np.testing.assert_allclose(v, r * np.sqrt(D / 3), rtol=0.15)
    np.testing.assert_allclose(out.values["relative"], v / np.linalg.norm(x.reshape(2, -1), axis=1),
                               rtol=1e-5)
    avg = tfxai.get_metric("avg_sensitivity").score(bb, sal, x, t, attributions=raw, seeds=[3, 4])
    assert np.all(avg <= v) and np.all(avg > 0)


def test_sensitivity_zero_attribution_relative_is_nan_with_note():
    bb = lambda_model(lambda x: 0.0 * tf.reduce_sum(x, axis=(1, 2, 3)))
    sal = tfxai.get_attributer("saliency", bb)
    x = images(1)
    out = tfxai.get_metric("max_sensitivity").evaluate(bb, sal, x, [0])
    assert out.values[""][0] == 0.0
    assert np.isnan(out.values["relative"][0]) and "zero attribution norm" in out.notes["relative"][0]


def test_sensitivity_refuses_stored_only_attributions():
    class Stored(Attributer):
        name = "stored"
        rerunnable = False

    bb = linear_model()
    x = images(1)
    with pytest.raises(MetricInputError, match="max_sensitivity.*cannot be re-run"):
        tfxai.get_metric("max_sensitivity").evaluate(bb, Stored(bb), x, [0],
                                                     attributions=np.zeros_like(x))


# --------------------------------------------------------------------------------------- SSIM


def test_ssim_of_a_map_with_itself_is_one_and_rotation_by_zero_is_identity():
    rng = np.random.default_rng(0)
    m = rng.random((2, 32, 32))
    np.testing.assert_allclose(ssim(m, m, data_range=1.0), 1.0)
    np.testing.assert_allclose(ssim(m, rotate(m, 0.0), data_range=1.0), 1.0)
    assert np.all(ssim(m, rotate(m, 30.0), data_range=1.0) < 0.9)
    # scikit-image's settings: 11×11 uniform window, K1=0.01, K2=0.03
    from skimage.metrics import structural_similarity

    want = structural_similarity(m[0], m[1], win_size=11, K1=0.01, K2=0.03,
                                 gaussian_weights=False, data_range=1.0)
    np.testing.assert_allclose(ssim(m[:1], m[1:], data_range=1.0), want)


def _corner_model(size: int = 16):
    """logit0 = 0.05·(mean of the four 3×3 corners − 150): rotation blackens the corners of a bright
    image (large ΔP) but not of an image whose corners are already black (ΔP = 0)."""

    def fn(x):
        c = [x[:, :3, :3], x[:, :3, -3:], x[:, -3:, :3], x[:, -3:, -3:]]
        return 0.05 * (tf.add_n([tf.reduce_mean(v, axis=(1, 2, 3)) for v in c]) / 4 - 150.0)

    return lambda_model(fn, size)


def _gate_images(size: int = 16) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size] - (size - 1) / 2
    disk = (np.hypot(yy, xx) < size / 2 - 3).astype(np.float32)
    bright = np.full((size, size, 3), 200.0, np.float32)
    return np.stack([bright, bright * disk[..., None]])


def test_ssim_augmentation_gate_gives_nan_where_it_should():
    bb = _corner_model()
    x = _gate_images()
    t = np.array([0, 0])
    sal = tfxai.get_attributer("saliency", bb)
    metric = SSIMAugmentation()
    metric.variants = ("rotate_30", "rotate_-15")  # the two rotations keep the test short
    metric.dataset_stat = metric.combine_statistics([metric.dataset_statistic(sal, sal.attribute(x, t))])
    out = metric.evaluate(bb, sal, x, t)
    for v in metric.variants:
        assert np.isnan(out.values[v][0]), out.notes[v]
        assert "gated out: |ΔP| =" in out.notes[v][0]
        assert np.isfinite(out.values[v][1]) and out.notes[v][1] == ""
        assert -1.0 <= out.values[v][1] <= 1.0
    assert out.recorded["data_range"] == pytest.approx(metric.dataset_stat)


def test_ssim_augmentation_rotation_compares_rotated_original_map():
    # a rotation-equivariant method on a model with ΔP = 0: map(rotate(x)) = rotate(map(x)) up to
    # interpolation, so SSIM is high; without rotating the original map it would be much lower
    bb = lambda_model(lambda x: 0.0 * tf.reduce_sum(x, axis=(1, 2, 3)), size=32)

    class Identity(CountingSaliency):
        def attribute(self, images, targets=None, seeds=None):
            self.calls.append(len(images))
            return np.asarray(images, np.float32)

    att = Identity(tfxai.get_attributer("saliency", bb))
    x = np.zeros((1, 32, 32, 3), np.float32)
    x[0, 8:24, 12:20] = 255.0
    metric = SSIMAugmentation()
    metric.variants = ("rotate_30",)
    out = metric.evaluate(bb, att, x, [0], attributions=x)
    assert out.values["rotate_30"][0] > 0.9
    assert "no dataset pass" in out.notes["rotate_30"][0]  # dataset_stat None: batch max used
    unrotated = ssim(att.to_map(x, scale="none"), att.to_map(rotate(x, 30.0), scale="none"),
                     data_range=float(att.to_map(x, scale="none").max()))
    assert unrotated[0] < out.values["rotate_30"][0] - 0.2
    assert att.calls == [1]


def test_ssim_augmentation_variants_and_dataset_pass():
    m = tfxai.get_metric("ssim_augmentation")
    assert m.variants == ("rotate_-30", "rotate_-15", "rotate_15", "rotate_30", "boost_chromaticity",
                          "freaky_details", "normalize_local", "mighty_details", "sharpen")
    assert m.needs_dataset_pass and m.needs_attributer
    raw = np.zeros((2, 4, 4, 3), np.float32)
    raw[1, 0, 0] = [-7.0, 1.0, 2.0]
    assert m.dataset_statistic(None, raw) == pytest.approx(4.0)  # |sum over channels|
    assert m.combine_statistics([4.0, float("nan"), 9.5, 2.0]) == 9.5


def test_ssim_augmentation_with_gmic_filters_on_a_cnn():
    keras.utils.set_random_seed(0)
    inp = L.Input((24, 24, 3))
    h = L.Conv2D(4, 3, padding="same", activation="relu")(L.Rescaling(1 / 255)(inp))
    out = L.Dense(2)(L.GlobalAveragePooling2D()(h))
    bb = tfxai.load_model(keras.Model(inp, out), output="logits")
    w = np.random.default_rng(0).normal(0, 0.05, (4, 2)).astype(np.float32)
    bb.keras_model.layers[-1].set_weights([w, np.zeros(2, np.float32)])  # small logits: ΔP ≈ 0
    cam = tfxai.get_attributer("gradcam", bb)
    x = images(2, size=24)
    metric = SSIMAugmentation()
    metric.variants = ("sharpen", "boost_chromaticity")
    out = metric.evaluate(bb, cam, x, [0, 1])
    for v in metric.variants:
        assert np.all(np.isfinite(out.values[v])) and np.all(out.values[v] <= 1.0)
        assert all(n == "data range L from this batch (no dataset pass)" for n in out.notes[v])
    # the filters change the picture, so the maps change: SSIM below 1
    assert np.all(out.values["sharpen"] < 1.0 - 1e-6)
