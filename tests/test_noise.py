"""Noise tunnels on a model with known gradients: F_c(x) = ½ Σ_i C_ci x_i², ∇F_c = C_c ⊙ x."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from _tiny_models import backbone, images, small_cnn

import tfxai
from tfxai.attribution.base import TUNNELS
from tfxai.backend import keras

L = keras.layers
SIZE = 6


@pytest.fixture(scope="module")
def quad():
    rng = np.random.default_rng(0)
    c = rng.uniform(-1, 1, (2, SIZE, SIZE, 3)).astype(np.float32)
    ct = tf.constant(c)
    inp = L.Input((SIZE, SIZE, 3))
    out = L.Lambda(lambda v: 0.5 * tf.einsum("nhwc,khwc->nk", v * v, ct))(inp)
    bb = backbone(keras.Model(inp, out))
    x = images(3, size=SIZE)
    t = np.array([0, 1, 1])
    return bb, c, x, t


def test_registered():
    assert {"smoothgrad", "smoothgrad_sq", "vargrad"} <= set(TUNNELS)


@pytest.mark.parametrize("tunnel", ["smoothgrad", "smoothgrad_sq", "vargrad"])
def test_matches_definition_exactly(quad, tunnel):
    """With the tunnel's own noise draws, each variant is its formula over M = C ⊙ (x + ε)."""
    bb, c, x, t = quad
    att = tfxai.get_attributer(f"saliency+{tunnel}", bb, n_samples=7, sigma=0.2, internal_batch_size=4)
    out = att.attribute(x, t)
    noisy = att.noise(x, att.resolve_seeds(len(x), None))  # (N, n, H, W, 3)
    np.testing.assert_allclose((noisy - x[:, None]).std(), 0.2 * 255, rtol=0.15)
    m = c[t][:, None] * noisy.astype(np.float64)
    expect = {"smoothgrad": m.mean(1), "smoothgrad_sq": (m**2).mean(1), "vargrad": m.var(1)}
    np.testing.assert_allclose(out, expect[tunnel], rtol=2e-4, atol=1e-3)


def test_expectations(quad):
    """E[smoothgrad] = C x, E[smoothgrad_sq] = C²(x² + s²), E[vargrad] ≈ C² s²."""
    bb, c, x, t = quad
    n, sigma = 400, 0.1
    s = sigma * 255
    ct = c[t]
    kw = dict(n=n, sigma=sigma, internal_batch_size=256)
    sg = tfxai.get_attributer("saliency+smoothgrad", bb, **kw).attribute(x, t)
    sq = tfxai.get_attributer("saliency+smoothgrad_sq", bb, **kw).attribute(x, t)
    vg = tfxai.get_attributer("saliency+vargrad", bb, **kw).attribute(x, t)
    se = np.abs(ct) * s / np.sqrt(n)
    assert np.mean(np.abs(sg - ct * x) < 4 * se + 1e-6) > 0.99
    np.testing.assert_allclose(vg.sum(), (ct**2 * s**2).sum(), rtol=0.05)
    np.testing.assert_allclose(sq.sum(), (ct**2 * (x**2 + s**2)).sum(), rtol=0.05)


def test_chunking_batching_and_seeds(quad):
    bb, _, x, t = quad
    a = tfxai.get_attributer("saliency+vargrad", bb, n_samples=5, internal_batch_size=2,
                             batch_size=1).attribute(x, t)
    b = tfxai.get_attributer("saliency+vargrad", bb, n_samples=5, internal_batch_size=64).attribute(x, t)
    np.testing.assert_allclose(a, b, rtol=1e-5)
    c = tfxai.get_attributer("saliency+vargrad", bb, n_samples=5, seed=3).attribute(x, t)
    assert not np.allclose(a, c)
    d = tfxai.get_attributer("saliency+vargrad", bb, n_samples=5).attribute(x, t, seeds=[5, 6, 7])
    e = tfxai.get_attributer("saliency+vargrad", bb, n_samples=5).attribute(x[1:], t[1:], seeds=[6, 7])
    np.testing.assert_allclose(d[1:], e, rtol=1e-5)


def test_contract():
    bb = backbone(small_cnn())
    att = tfxai.get_attributer("integrated_gradients+smoothgrad", bb, n_samples=2, steps=4, sigma=0.1)
    assert att.key == "integrated_gradients+smoothgrad"
    params = att.method_params()
    assert params["n_samples"] == 2 and params["sigma"] == 0.1 and "internal_batch_size" not in params
    assert params["inner"]["steps"] == 4 and params["inner"]["baseline"] == "black"
    assert att.stochastic and att.rerunnable
    sal = tfxai.get_attributer("saliency+smoothgrad_sq", bb)
    assert sal.map_defaults == tfxai.get_attributer("saliency", bb).map_defaults
    x = images(2)
    assert sal.to_map(sal.attribute(x, [0, 1])).shape == (2, 16, 16)
    cam = tfxai.get_attributer("gradcam+smoothgrad", bb, n_samples=2)
    assert cam.resolution == "layer" and cam.attribute(x, [0, 1]).shape == (2, 16, 16)
    with pytest.raises(ValueError, match="noise tunnel"):
        tfxai.get_attributer("saliency+blurgrad", bb)
    with pytest.raises(ValueError, match="sigma"):
        tfxai.get_attributer("saliency+smoothgrad", bb, sigma=-1)


def test_stochastic_inner_method_seeded():
    bb = backbone(small_cnn())
    x = images(2)
    kw = dict(n_samples=3, inner={"background": images(2, seed=4), "n_samples": 2})
    a = tfxai.get_attributer("gradient_shap+smoothgrad", bb, **kw).attribute(x, [0, 1])
    b = tfxai.get_attributer("gradient_shap+smoothgrad", bb, batch_size=1, **kw).attribute(
        x, [0, 1])
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-9)


def test_run_seed_reaches_tunnel_and_its_inner_method(quad):
    """A run's --seed drives a tunnel around a deterministic method and around a stochastic one;
    a seed the user gives as a method option wins."""
    from tfxai.pipeline.session import build_attributers
    from tfxai.run import RunConfig

    def built(seed, **method_params):
        cfg = RunConfig(models=["m"], methods=["saliency+smoothgrad", "integrated_gradients+smoothgrad"],
                        images=".", seed=seed, method_params=method_params)
        return build_attributers(cfg, quad[0])

    a, b = built(5), built(6)
    assert a["saliency+smoothgrad"].params["seed"] == 5
    assert a["integrated_gradients+smoothgrad"].params["seed"] == 5
    assert "seed" not in a["saliency+smoothgrad"].inner.params
    x, t = quad[2][:1], quad[3][:1]
    np.testing.assert_array_equal(a["saliency+smoothgrad"].attribute(x, t),
                                  built(5)["saliency+smoothgrad"].attribute(x, t))
    assert not np.allclose(a["saliency+smoothgrad"].attribute(x, t),
                           b["saliency+smoothgrad"].attribute(x, t))
    own = built(5, **{"saliency+smoothgrad": {"seed": 9}})
    assert own["saliency+smoothgrad"].params["seed"] == 9
