"""Occlusion-confidence metrics on a tiny Keras model whose probabilities are known in closed form.

The model takes 8×8 RGB images in 0..255. Its class-0 logit is z = S·mean_L(x)/255 + B, where
mean_L is the mean over the left half (columns 0..3) of the channel mean; the class-1 logit is 0.
So p_0 = sigmoid(z) and p_1 = sigmoid(−z).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import ndimage

import tfxai
from tfxai.backend import keras

H = W = 8
S, B = 4.0, -1.0


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def expected_p0(images):
    x = np.asarray(images, np.float64).mean(axis=-1)
    return sigmoid(S * x[:, :, :4].mean(axis=(1, 2)) / 255.0 + B)


@pytest.fixture(scope="module")
def backbone():
    keras.utils.set_random_seed(0)
    inp = keras.Input((H, W, 3))
    conv = keras.layers.Conv2D(1, 1, use_bias=False, name="conv")(inp)
    flat = keras.layers.Flatten()(conv)
    out = keras.layers.Dense(2, name="dense")(flat)
    model = keras.Model(inp, out)
    model.get_layer("conv").set_weights([np.full((1, 1, 3, 1), 1 / 3, np.float32)])
    w = np.zeros((H * W, 2), np.float32)
    left = (np.arange(H * W) % W) < 4
    w[left, 0] = S / (left.sum() * 255.0)
    model.get_layer("dense").set_weights([w, np.array([B, 0.0], np.float32)])
    return tfxai.load_model(model, output="logits")


def halves(which="left"):
    m = np.zeros((H, W), np.float32)
    if which == "left":
        m[:, :4] = 1.0
    else:
        m[:, 4:] = 1.0
    return m


def run(bb, name, images, maps, targets, **params):
    images = np.asarray(images, np.float32)
    maps = np.asarray(maps, np.float32)
    if maps.ndim == 2:
        maps = np.broadcast_to(maps, (len(images), H, W)).copy()
    metric = tfxai.get_metric(name, **params)
    return metric.evaluate(bb, None, images, np.asarray(targets), attributions=maps)


def test_model_is_what_the_tests_assume(backbone):
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (4, H, W, 3)).astype(np.float32)
    np.testing.assert_allclose(backbone.predict(x)[:, 0], expected_p0(x), rtol=1e-5)


def test_drop_and_increase_zero_fill(backbone):
    x = np.full((1, H, W, 3), 255.0, np.float32)  # z = S + B = 3
    y, o = sigmoid(3.0), sigmoid(B)  # occluding the left half (fill 0) leaves z = B
    drop = 100 * (y - o) / y  # ≈ 71.77
    # map on the left half: b keeps the left half (nothing changes), s removes it
    out = run(backbone, "confidence_drop", x, halves("left"), [0])
    assert out.values["b"][0] == pytest.approx(0.0, abs=1e-4)
    assert out.values["s"][0] == pytest.approx(drop, rel=1e-4)
    # map on the right half: the roles swap
    out = run(backbone, "confidence_drop", x, halves("right"), [0])
    assert out.values["b"][0] == pytest.approx(drop, rel=1e-4)
    assert out.values["s"][0] == pytest.approx(0.0, abs=1e-4)
    # class 1 gains when the left half is removed: increase 100 for s, drop 0
    inc = run(backbone, "confidence_increase", x, halves("left"), [1])
    assert inc.values["s"][0] == 100.0 and inc.values["b"][0] == 0.0
    assert run(backbone, "confidence_drop", x, halves("left"), [1]).values["s"][0] == 0.0
    inc0 = run(backbone, "confidence_increase", x, halves("left"), [0])
    assert inc0.values["s"][0] == 0.0


def test_dataset_mean_matches_reference_formula(backbone):
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 255, (6, H, W, 3)).astype(np.float32)
    maps = rng.uniform(size=(6, H, W)).astype(np.float32)
    targets = np.array([0, 1, 0, 1, 0, 1])
    drop = run(backbone, "confidence_drop", x, maps, targets)
    inc = run(backbone, "confidence_increase", x, maps, targets)
    # recompute independently: R = the 32 highest pixels, zero fill
    thr = np.sort(maps.reshape(6, -1), axis=1)[:, -32][:, None, None]
    region = maps >= thr
    assert (region.reshape(6, -1).sum(axis=1) == 32).all()  # continuous values: no ties
    p = np.stack([expected_p0(x), 1 - expected_p0(x)], axis=1)[np.arange(6), targets]
    for v, keep in (("b", region), ("s", ~region)):
        xo = np.where(keep[..., None], x, 0.0)
        po = np.stack([expected_p0(xo), 1 - expected_p0(xo)], axis=1)[np.arange(6), targets]
        ref_drop = 100 * np.mean(np.maximum(0, p - po) / p)
        ref_inc = 100 * np.mean(p < po)
        assert drop.values[v].mean() == pytest.approx(ref_drop, rel=1e-3, abs=1e-3)
        assert inc.values[v].mean() == pytest.approx(ref_inc)


def test_mean_fill(backbone):
    x = np.zeros((1, H, W, 3), np.float32)
    x[:, :, :4] = 255.0  # channel means 127.5
    y = sigmoid(S + B)
    o = sigmoid(S * 0.5 + B)  # left half refilled with 127.5
    out = run(backbone, "confidence_drop", x, halves("left"), [0], fill="mean")
    assert out.values["s"][0] == pytest.approx(100 * (y - o) / y, rel=1e-4)
    assert out.values["b"][0] == pytest.approx(0.0, abs=1e-4)


def test_mean_fill_is_per_image_and_per_channel(backbone):
    x = np.zeros((2, H, W, 3), np.float32)
    x[0, :, :4] = 255.0  # image 0: mean 127.5 in every channel
    x[1, :, :4, 0] = 255.0  # image 1: only red on the left: channel means (127.5, 0, 0)
    out = run(backbone, "confidence_drop", x, halves("left"), [0, 0], fill="mean")
    y = expected_p0(x)
    o = sigmoid(S * np.array([0.5, 0.5 / 3]) + B)
    np.testing.assert_allclose(out.values["s"], 100 * (y - o) / y, rtol=1e-4)
    fill = tfxai.evaluation.confidence.fill_values(x, "mean", 5.0)
    np.testing.assert_allclose(fill[1, 3, 3], [127.5, 0.0, 0.0])


def test_blur_fill(backbone):
    const = np.full((1, H, W, 3), 200.0, np.float32)  # blurring a constant image changes nothing
    out = run(backbone, "confidence_drop", const, halves("left"), [0], fill="blur")
    assert out.values["s"][0] == pytest.approx(0.0, abs=1e-3)
    assert out.values["b"][0] == pytest.approx(0.0, abs=1e-3)
    x = np.zeros((1, H, W, 3), np.float32)
    x[:, :, :2] = 255.0
    blurred = ndimage.gaussian_filter(x, sigma=(0, 2.0, 2.0, 0), mode="reflect")
    occluded = np.where(halves("left")[None, ..., None] > 0, blurred, x)  # s: blur the left half
    y, o = expected_p0(x)[0], expected_p0(occluded)[0]
    assert o < y  # the blur spreads the bright columns into the right half
    out = run(backbone, "confidence_drop", x, halves("left"), [0], fill="blur", blur_sigma=2.0)
    assert out.values["s"][0] == pytest.approx(100 * (y - o) / y, rel=1e-3)


def test_percentile(backbone):
    x = np.full((1, H, W, 3), 255.0, np.float32)
    m = np.zeros((H, W), np.float32)
    m[:, :4] = 0.5
    m[:4, :4] = 1.0  # top 25 % = 16 px = the upper half of the left half
    y = sigmoid(S + B)
    o = sigmoid(S * 0.5 + B)
    out = run(backbone, "confidence_drop", x, m, [0], percentile=25)
    assert out.values["s"][0] == pytest.approx(100 * (y - o) / y, rel=1e-4)
    # default 50 %: the whole left half
    assert run(backbone, "confidence_drop", x, m, [0]).values["s"][0] == pytest.approx(
        100 * (y - sigmoid(B)) / y, rel=1e-4
    )


def test_ties_broken_in_raster_order_and_constant_map_note(backbone):
    x = np.full((2, H, W, 3), 255.0, np.float32)
    maps = np.stack([np.zeros((H, W)), np.full((H, W), 2.0)]).astype(np.float32)
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        out = run(backbone, "confidence_drop", x, maps, [0, 0])
    # R = the first 32 pixels in raster order = the top 4 rows; s removes half of the left half
    y, o = sigmoid(S + B), sigmoid(S * 0.5 + B)
    np.testing.assert_allclose(out.values["s"], 100 * (y - o) / y, rtol=1e-4)
    assert out.notes["s"] == ["all-zero map", "constant map"]
    # bright top half only: R (the top rows) is exactly what s removes, b keeps it all
    x[:, 4:] = 0.0
    out = run(backbone, "confidence_drop", x, maps, [0, 0])
    y = sigmoid(S * 0.5 + B)
    np.testing.assert_allclose(out.values["s"], 100 * (y - sigmoid(B)) / y, rtol=1e-4)
    np.testing.assert_allclose(out.values["b"], 0.0, atol=1e-4)
    # a Grad-CAM-like map: 10 positive pixels on the right, zeros elsewhere; R keeps exactly 32
    m = np.zeros((H, W), np.float32)
    m[0:5, 6:8] = 1.0
    region = tfxai.evaluation.confidence.top_region(m[None], 50.0)[0]
    assert region.sum() == 32 and region[0:5, 6:8].all()


def test_one_forward_pass_per_variant(backbone, monkeypatch):
    calls = []
    original = type(backbone).predict

    def counting(self, images, batch_size=32):
        calls.append(len(images))
        return original(self, images, batch_size)

    monkeypatch.setattr(type(backbone), "predict", counting)
    x = np.full((5, H, W, 3), 255.0, np.float32)
    out = run(backbone, "confidence_increase", x, halves("left"), [0] * 5)
    assert calls == [5, 5, 5]  # originals, b, s
    assert set(out.values) == {"b", "s"}


class _FixedProbabilities:
    """A stand-in backbone whose probabilities are fixed: Y on the first call, then O."""

    def __init__(self, y, o):
        self.outputs = [np.asarray(y, np.float32), np.asarray(o, np.float32),
                        np.asarray(o, np.float32)]

    def predict(self, images, batch_size=32):
        return self.outputs.pop(0)


def test_zero_target_probability_is_defined():
    y = np.array([[0.0, 1.0], [0.5, 0.5]])
    o = np.array([[0.2, 0.8], [0.2, 0.8]])
    metric = tfxai.get_metric("confidence_drop")
    x = np.zeros((2, H, W, 3), np.float32)
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        out = metric.evaluate(_FixedProbabilities(y, o), None, x, [0, 0],
                              attributions=np.stack([halves()] * 2))
    assert out.values["b"].tolist() == pytest.approx([0.0, 60.0])
    assert out.notes["b"] == ["target probability is 0", ""]


def test_non_finite_map_and_needs_model(backbone):
    x = np.full((2, H, W, 3), 255.0, np.float32)
    maps = np.stack([halves(), halves()])
    maps[1, 0, 0] = np.inf
    out = run(backbone, "confidence_drop", x, maps, [0, 0])
    assert np.isfinite(out.values["s"][0])
    assert np.isnan(out.values["s"][1]) and out.notes["s"][1] == "non-finite attribution"
    with pytest.raises(ValueError, match="needs the model"):
        tfxai.get_metric("confidence_drop").score(None, None, x, [0, 0], attributions=maps)


def test_with_attributer_saliency(backbone):
    """Saliency of this model is constant on the left half and 0 on the right: R = left half."""
    att = tfxai.get_attributer("saliency", backbone)
    x = np.full((1, H, W, 3), 255.0, np.float32)
    metric = tfxai.get_metric("confidence_drop")
    s = metric.score(backbone, att, x, [0], variant="s")  # attributions computed by the metric
    y = sigmoid(S + B)
    assert s[0] == pytest.approx(100 * (y - sigmoid(B)) / y, rel=1e-4)
    # the localisation metrics see the same map through the attributer
    pg = tfxai.get_metric("pointing_game")
    boxes = [np.array([[0, 0, 2, 8]], np.float32)]  # 16 of the 32 tied maxima
    assert pg.score(backbone, att, x, [0], boxes=boxes)[0] == pytest.approx(0.5)


def test_params_and_metadata():
    with pytest.raises(ValueError, match="fill"):
        tfxai.get_metric("confidence_drop", fill="noise")
    with pytest.raises(ValueError, match="percentile"):
        tfxai.get_metric("confidence_increase", percentile=100)
    drop, inc = tfxai.get_metric("confidence_drop"), tfxai.get_metric("confidence_increase")
    assert drop.variants == inc.variants == ("b", "s")
    assert drop.needs_model and not drop.needs_boxes and drop.family == "confidence"
    assert drop.variant_directions == {"b": "lower", "s": "higher"}
    assert inc.variant_directions == {"b": "higher", "s": "lower"}
    assert "batch_size" not in drop.metric_params()
    assert drop.metric_params() == {"percentile": 50.0, "fill": "zero", "blur_sigma": 5.0,
                                    "map_reduce": None, "map_absolute": None}
