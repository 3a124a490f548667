"""Integrated gradients and gradient SHAP: completeness, baselines, chunking, shap."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from _tiny_models import backbone, corr, images, small_cnn, zoo_cnn
from PIL import Image

import tfxai
from tfxai.attribution.integrated import IntegratedGradients, ig_path, make_baseline
from tfxai.backend import keras

L = keras.layers


def _linear():
    keras.utils.set_random_seed(5)
    inp = L.Input((8, 8, 3))
    model = keras.Model(inp, L.Dense(3)(L.Flatten()(inp)))
    return model, model.layers[-1].get_weights()[0]


def _completeness_error(bb, att, x, t):
    seeds = tf.constant(att.resolve_seeds(len(x), None))
    x0 = att.baseline(tf.constant(x), seeds).numpy()
    idx = np.arange(len(x))
    delta = bb.predict_logits(x)[idx, t] - bb.predict_logits(x0)[idx, t]
    total = att.attribute(x, t).reshape(len(x), -1).sum(axis=1)
    return np.abs(total - delta) / np.abs(delta), delta


@pytest.mark.parametrize("rule", ["riemann_right", "trapezoid"])
def test_completeness_256_steps(rule):
    """|Σ IG − (F(x) − F(x'))| < 1% of |F(x) − F(x')| at 256 steps (black baseline)."""
    bb = backbone(small_cnn())
    x = images(4)
    t = np.array([0, 1, 2, 3])
    att = tfxai.get_attributer("integrated_gradients", bb, steps=256, rule=rule,
                               internal_batch_size=128)
    err, delta = _completeness_error(bb, att, x, t)
    assert np.all(np.abs(delta) > 1e-3)
    assert np.all(err < 0.01), err


@pytest.mark.parametrize("baseline", ["uniform", "gaussian", "blur", "max_distance"])
def test_completeness_other_baselines(baseline):
    bb = backbone(small_cnn())
    x = images(4)
    t = np.array([0, 1, 2, 3])
    att = tfxai.get_attributer("integrated_gradients", bb, steps=256, baseline=baseline,
                               rule="trapezoid", internal_batch_size=128)
    err, delta = _completeness_error(bb, att, x, t)
    big = np.abs(delta) > 0.02  # relative error is meaningless where F(x) ≈ F(x')
    assert big.sum() >= 2
    assert np.all(err[big] < 0.02), err


def test_linear_model_exact():
    model, w = _linear()
    bb = backbone(model)
    x = images(2, size=8)
    for baseline in ("black", "max_distance"):
        att = tfxai.get_attributer("integrated_gradients", bb, steps=3, baseline=baseline)
        x0 = att.baseline(tf.constant(x), tf.constant([0, 1], tf.int64)).numpy()
        raw = att.attribute(x, [1, 2])
        for i, t in enumerate([1, 2]):
            np.testing.assert_allclose(raw[i].ravel(), (x[i] - x0[i]).ravel() * w[:, t],
                                       rtol=1e-4, atol=1e-6)


def test_path_rules():
    a, w = ig_path(4, "riemann_right")
    np.testing.assert_allclose(a, [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(w, [0.25] * 4)
    a, w = ig_path(4, "trapezoid")
    np.testing.assert_allclose(a, [0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(w, [0.125, 0.25, 0.25, 0.25, 0.125])


def test_baselines():
    x = tf.constant(images(2, size=16))
    seeds = tf.constant([3, 4], tf.int64)
    np.testing.assert_array_equal(make_baseline(x, "black", seeds), 0.0)
    md = make_baseline(x, "max_distance", seeds).numpy()
    np.testing.assert_array_equal(md, np.where(x.numpy() < 127.5, 255.0, 0.0))
    u = make_baseline(x, "uniform", seeds).numpy()
    assert 0 <= u.min() and u.max() <= 255 and abs(u.mean() - 127.5) < 10
    g = make_baseline(x, "gaussian", seeds).numpy()
    assert 0 <= g.min() and g.max() <= 255
    assert 0.3 * 255 < np.std(g - x.numpy()) < 0.5 * 255  # σ = 0.5, shrunk by clipping
    # seeded per image: image 1 alone gets the same draw as in the batch
    u1 = make_baseline(x[1:], "uniform", seeds[1:]).numpy()
    np.testing.assert_array_equal(u1[0], u[1])
    assert not np.allclose(u[0], u[1])
    b = make_baseline(x, "blur", seeds).numpy()
    assert b.std() < x.numpy().std()


class _CountingIG(IntegratedGradients):
    """Records the largest batch the model sees inside the compiled loop."""

    def _setup(self):
        self.max_rows = tf.Variable(0, dtype=tf.int32)
        super()._setup()

    def _logits(self, x):
        self.max_rows.assign(tf.maximum(self.max_rows, tf.shape(x)[0]))
        return super()._logits(x)


def test_memory_is_chunked_and_result_independent_of_chunks():
    bb = backbone(zoo_cnn(), output="probabilities")
    x = images(3)
    t = np.array([0, 1, 2])
    small = _CountingIG(bb, steps=256, internal_batch_size=8)
    a = small.attribute(x, t)
    assert small.max_rows.numpy() == 8  # never 256 (or 3·256) images at once
    b = tfxai.get_attributer("integrated_gradients", bb, steps=256, internal_batch_size=100,
                             batch_size=1).attribute(x, t)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6 * np.abs(a).max())
    assert small._fn.experimental_get_tracing_count() == 1


def test_seeded_baselines_batch_independent():
    bb = backbone(small_cnn())
    x = images(3)
    t = np.array([0, 1, 2])
    kw = dict(steps=8, baseline="gaussian")
    a = tfxai.get_attributer("integrated_gradients", bb, **kw).attribute(x, t)
    b = tfxai.get_attributer("integrated_gradients", bb, batch_size=1, **kw).attribute(x, t)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-8)
    c = tfxai.get_attributer("integrated_gradients", bb, seed=1, **kw).attribute(x, t)
    assert not np.allclose(a, c)


def test_bad_params():
    bb = backbone(small_cnn())
    with pytest.raises(ValueError, match="baseline"):
        tfxai.get_attributer("integrated_gradients", bb, baseline="white")
    with pytest.raises(ValueError, match="steps"):
        tfxai.get_attributer("integrated_gradients", bb, steps=0)
    with pytest.raises(ValueError, match="rule"):
        tfxai.get_attributer("integrated_gradients", bb, rule="simpson")


# ----------------------------------------------------------------------------- gradient SHAP


def test_gradient_shap_linear_exact():
    """For F = w·x every draw gives (x − b)·w: the mean over the background is exact."""
    model, w = _linear()
    bb = backbone(model)
    x = images(2, size=8)
    bg = images(3, size=8, seed=9)
    raw = tfxai.get_attributer("gradient_shap", bb, background=bg, samples=2).attribute(x, [0, 2])
    for i, t in enumerate([0, 2]):
        expect = (x[i] - bg.mean(axis=0)).ravel() * w[:, t]
        np.testing.assert_allclose(raw[i].ravel(), expect, rtol=1e-4, atol=1e-5)


def test_gradient_shap_agrees_with_shap_gradient_explainer():
    """In expectation: the same estimator as shap's GradientExplainer (corr > 0.9 at a high
    sample count)."""
    shap = pytest.importorskip("shap")
    model = small_cnn()
    bb = backbone(model)
    x = images(2)
    t = np.array([1, 3])
    bg = images(4, seed=7)
    ours = tfxai.get_attributer("gradient_shap", bb, background=bg, samples=300,
                                internal_batch_size=200).attribute(x, t)
    explainer = shap.GradientExplainer(model, bg)
    sv = np.asarray(explainer.shap_values(x, nsamples=1200, rseed=0))
    ref = np.stack([sv[i, ..., t[i]] for i in range(len(x))])
    for i in range(len(x)):
        assert corr(ours[i], ref[i]) > 0.9


def test_gradient_shap_noise_seeded_and_batch_independent():
    bb = backbone(small_cnn())
    x = images(3)
    t = np.array([0, 1, 2])
    bg = images(2, seed=8)
    kw = dict(background=bg, samples=4, noise=0.1)
    a = tfxai.get_attributer("gradient_shap", bb, **kw).attribute(x, t)
    b = tfxai.get_attributer("gradient_shap", bb, batch_size=1, internal_batch_size=3,
                             **kw).attribute(x, t)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-8)
    c = tfxai.get_attributer("gradient_shap", bb, background=bg, samples=4).attribute(x, t)
    assert not np.allclose(a, c)


def test_gradient_shap_background_folder_and_errors(tmp_path):
    bb = backbone(small_cnn())
    bg = images(3, seed=2)
    folder = tmp_path / "bg"
    folder.mkdir()
    for i, img in enumerate(bg):
        Image.fromarray(img.astype(np.uint8)).save(folder / f"b{i}.png")
    att = tfxai.get_attributer("gradient_shap", bb, background=str(folder), background_size=2)
    assert att.background.shape == (2, 16, 16, 3)
    np.testing.assert_allclose(att.background, bg[:2].astype(np.uint8), atol=1)
    assert att.method_params()["background"] == str(folder.resolve())
    arr = tfxai.get_attributer("gradient_shap", bb, background=bg)
    assert arr.method_params()["background"].startswith("array[3, 16, 16, 3]:")
    with pytest.raises(ValueError, match="background"):
        tfxai.get_attributer("gradient_shap", bb)
    with pytest.raises(ValueError, match="does not exist"):
        tfxai.get_attributer("gradient_shap", bb, background=str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="background"):
        tfxai.get_attributer("gradient_shap", bb, background=str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="shape"):
        tfxai.get_attributer("gradient_shap", bb, background=np.zeros((2, 8, 8, 3)))
