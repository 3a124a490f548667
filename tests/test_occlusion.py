"""Occlusion on a linear model, where every window's drop is known in closed form."""

from __future__ import annotations

import numpy as np
import pytest

import tfxai
from tfxai.attribution.occlusion import window_starts
from tfxai.backend import keras

H, W = 20, 18


@pytest.fixture(scope="module")
def linear():
    keras.utils.set_random_seed(0)
    inp = keras.Input((H, W, 3))
    out = keras.layers.Dense(3, use_bias=True)(keras.layers.Flatten()(inp))
    model = keras.Model(inp, out)
    kernel, bias = model.get_weights()
    return model, kernel, bias


def _expected(image, kernel, target, patch, stride, fill_img):
    """Loop reference: logit drop of each window = Σ_window w·(x − fill), averaged per pixel."""
    wmap = kernel[:, target].reshape(H, W, 3)
    total, count = np.zeros((H, W)), np.zeros((H, W))
    for y in window_starts(H, patch, stride):
        for x in window_starts(W, patch, stride):
            sl = (slice(y, y + patch), slice(x, x + patch))
            drop = float((wmap[sl] * (image[sl] - fill_img[sl])).sum())
            total[sl] += drop
            count[sl] += 1
    return total / count


def _backbone(model):
    # a dense-only model has no conv layer: name any layer for the Grad-CAM default
    return tfxai.load_model(model, output="logits")


@pytest.mark.parametrize("fill", ["0", "mean"])
def test_linear_model_closed_form(linear, fill):
    model, kernel, _ = linear
    bb = _backbone(model)
    rng = np.random.default_rng(1)
    images = rng.uniform(0, 255, (2, H, W, 3)).astype(np.float32)
    att = tfxai.get_attributer("occlusion", bb, patch=6, stride=4, fill=fill, model_batch_size=7)
    raw = att.attribute(images, [0, 2])
    assert raw.shape == (2, H, W)
    for i, t in enumerate([0, 2]):
        fill_img = (np.zeros_like(images[i]) if fill == "0"
                    else np.broadcast_to(images[i].mean(axis=(0, 1)), images[i].shape))
        exp = _expected(images[i], kernel, t, 6, 4, fill_img)
        np.testing.assert_allclose(raw[i], exp, rtol=1e-3, atol=1e-2 * np.abs(exp).max())


def test_windows_cover_border_and_probability_score(linear):
    assert list(window_starts(20, 6, 4)) == [0, 4, 8, 12, 14]
    assert list(window_starts(224, 16, 8))[-1] == 208
    model, _, _ = linear
    bb = _backbone(model)
    x = np.random.default_rng(2).uniform(0, 255, (1, H, W, 3)).astype(np.float32)
    raw = tfxai.get_attributer("occlusion", bb, patch=5, stride=5, score="probability",
                               fill="blur").attribute(x, [1])
    assert np.isfinite(raw).all() and np.abs(raw).max() <= 1.0
    with pytest.raises(ValueError, match="patch"):
        tfxai.get_attributer("occlusion", bb, patch=64)
    with pytest.raises(ValueError, match="fill"):
        tfxai.get_attributer("occlusion", bb, fill="grey")
