"""Cascading model-parameter randomisation [Adebayo et al. 2018] on tiny Keras models."""

from __future__ import annotations

import numpy as np
import pytest

import tfxai
from tfxai.backend import keras
from tfxai.evaluation.randomisation import spearman_rows, weighted_layers

L = keras.layers
SIZE = 12


def cnn(softmax: bool = False, seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inp = L.Input((SIZE, SIZE, 3))
    x = L.Rescaling(1 / 255)(inp)
    x = L.Conv2D(4, 3, padding="same", activation="relu", name="conv1")(x)
    x = L.BatchNormalization(name="bn")(x)
    x = L.Conv2D(6, 3, padding="same", activation="relu", name="conv2")(x)
    x = L.Flatten()(x)
    x = L.Dense(8, activation="relu", name="fc")(x)
    out = L.Dense(3, activation="softmax" if softmax else None, name="head")(x)
    return keras.Model(inp, out)


def images(n: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (n, SIZE, SIZE, 3)).astype(np.float32)


def test_spearman_rows_matches_scipy():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(0)
    a = rng.normal(size=(3, 50))
    b = a + rng.normal(size=(3, 50))
    b[2, :10] = b[2, 0]  # ties
    want = [spearmanr(a[i], b[i]).statistic for i in range(3)]
    np.testing.assert_allclose(spearman_rows(a, b), want, rtol=1e-12)
    assert np.isnan(spearman_rows(a[:1], np.ones((1, 50)))[0])


def test_weighted_layers_and_dynamic_variants():
    bb = tfxai.load_model(cnn(), output="logits")
    assert weighted_layers(bb.keras_model) == ["conv1", "conv2", "fc", "head"]
    m = tfxai.get_metric("model_randomisation", steps=3)
    assert m.variants_for(bb) == ("spearman@head", "spearman@fc", "spearman@conv2",
                                  "ssim@head", "ssim@fc", "ssim@conv2")


def test_linear_model_randomised_gradient_is_uncorrelated():
    # f = W·x: the saliency map is |W_c|; after re-initialising the only layer it is |W'_c|,
    # independent of |W_c| → rank correlation ≈ 0 (|ρ| < 0.25 for 3·144 values)
    keras.utils.set_random_seed(1)
    inp = L.Input((SIZE, SIZE, 3))
    model = keras.Model(inp, L.Dense(3, name="lin")(L.Flatten()(inp)))
    bb = tfxai.load_model(model, output="logits")
    sal = tfxai.get_attributer("saliency", bb)
    x = images(2)
    out = tfxai.get_metric("model_randomisation", steps=1).evaluate(bb, sal, x, [0, 2])
    assert set(out.values) == {"spearman@lin", "ssim@lin"}
    assert np.all(np.abs(out.values["spearman@lin"]) < 0.25), out.values
    assert np.all(out.values["ssim@lin"] < 0.5)


@pytest.mark.parametrize("softmax", [False, True])
def test_cascade_lowers_similarity_and_leaves_the_model_untouched(softmax):
    model = cnn(softmax=softmax)
    bb = tfxai.load_model(model, output="probabilities" if softmax else "logits")
    sal = tfxai.get_attributer("saliency", bb)
    x = images(3)
    t = np.array([0, 1, 2])
    before = bb.predict_logits(x)
    raw = sal.attribute(x, t)
    metric = tfxai.get_metric("model_randomisation", steps=2, seed=3)
    out = metric.evaluate(bb, sal, x, t, attributions=raw)
    assert list(out.values) == ["spearman@head", "spearman@fc", "ssim@head", "ssim@fc"]
    for v, vals in out.values.items():
        assert vals.shape == (3,) and np.all(np.isfinite(vals)), (v, out.notes[v])
        assert np.all(vals <= 1.0 + 1e-9)
    # randomising the head changes the map (with a softmax head the logits layer is a clone of the
    # head: it must be randomised too, or the map would not change at all)
    assert np.all(out.values["spearman@head"] < 0.95)
    np.testing.assert_array_equal(bb.predict_logits(x), before)  # original model untouched
    np.testing.assert_array_equal(sal.attribute(x, t), raw)
    # deterministic, and every batch starts again from the trained weights
    again = metric.evaluate(bb, sal, x, t, attributions=raw)
    for v in out.values:
        np.testing.assert_allclose(again.values[v], out.values[v], rtol=1e-6)
    part = metric.evaluate(bb, sal, x[1:], t[1:], attributions=raw[1:])
    np.testing.assert_allclose(part.values["ssim@fc"], out.values["ssim@fc"][1:], rtol=1e-6)


def test_gradcam_and_normal_init_and_seed():
    bb = tfxai.load_model(cnn(), output="logits")
    cam = tfxai.get_attributer("gradcam", bb)
    x = images(2, seed=1)
    a = tfxai.get_metric("model_randomisation", steps=1, init="normal").score(
        bb, cam, x, [0, 1], variant="ssim@head")
    b = tfxai.get_metric("model_randomisation", steps=1, init="normal", seed=1).score(
        bb, cam, x, [0, 1], variant="ssim@head")
    assert a.shape == (2,) and not np.allclose(a, b)
    with pytest.raises(ValueError, match="init"):
        tfxai.get_metric("model_randomisation", init="zeros")
