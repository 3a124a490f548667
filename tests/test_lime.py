"""LIME adapter: identical to lime's own explain_instance for the same seed and segmentation."""

from __future__ import annotations

import numpy as np
import pytest
from lime import lime_image

import tfxai
from tfxai.attribution.superpixel import lime_explain, lime_rows, make_segmenter
from tfxai.backend import keras

H = 64


def _tiny_model() -> keras.Model:
    keras.utils.set_random_seed(3)
    inp = keras.Input((H, H, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inp)
    x = keras.layers.Conv2D(6, 5, strides=2, activation="relu")(x)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(5, kernel_initializer=keras.initializers.RandomNormal(0, 3))(x)
    return keras.Model(inp, out)


def _image(seed: int = 0) -> np.ndarray:
    """A smooth colourful 64×64 picture with a few blobs (quickshift finds ~10–40 segments)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:H] / H
    img = np.stack([np.sin(6 * xx + 1) , np.cos(5 * yy), np.sin(4 * (xx + yy))], -1) * 0.5 + 0.5
    for _ in range(4):
        cy, cx, r = rng.uniform(0.2, 0.8, 2).tolist() + [rng.uniform(0.08, 0.2)]
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r**2] = rng.uniform(0, 1, 3)
    return (img * 255).astype(np.float32)


@pytest.fixture(scope="module")
def bb():
    return tfxai.load_model(_tiny_model(), output="logits")


def _lime_reference(bb, image, target, seed, segmenter, hide_color, num_samples):
    explainer = lime_image.LimeImageExplainer(random_state=seed)
    exp = explainer.explain_instance(
        image, lambda b: bb.predict(b, batch_size=100), labels=(target,), top_labels=None,
        hide_color=hide_color, num_samples=num_samples, batch_size=100,
        segmentation_fn=lambda img: segmenter(img / 255.0), random_seed=None,
    )
    w = np.zeros(len(np.unique(exp.segments)))
    for k, v in exp.local_exp[target]:
        w[k] = v
    return exp, w


@pytest.mark.parametrize("hide", ["zero", "mean"])
def test_weights_identical_to_lime(bb, hide):
    image, seed, target = _image(1), 1234, 2
    seg = make_segmenter("quickshift")
    exp, w_ref = _lime_reference(bb, image, target, seed, seg, 0 if hide == "zero" else None, 100)
    ours = lime_explain(image, lambda b: bb.predict(b, batch_size=100), target, seed,
                        n_samples=100, segmenter=seg, fill=hide)
    assert len(w_ref) >= 5, "segmentation too coarse for a meaningful test"
    np.testing.assert_array_equal(ours.segments, exp.segments)
    np.testing.assert_allclose(ours.weights, w_ref, atol=1e-6, rtol=0)
    assert np.abs(w_ref).max() > 1e-4  # the model does react to the perturbations
    assert ours.intercept == pytest.approx(exp.intercept[target], abs=1e-6)


def test_attributer_matches_lime_and_paints_superpixels(bb):
    images = np.stack([_image(1), _image(2)])
    targets = np.array([2, 4])
    att = tfxai.get_attributer("lime", bb, n_samples=100, seed=0, model_batch_size=64)
    raw = att.attribute(images, targets, seeds=[11, 12])
    assert raw.shape == (2, H, H) and raw.dtype == np.float32
    seg = make_segmenter("quickshift")
    for i in range(2):
        exp, w_ref = _lime_reference(bb, images[i], int(targets[i]), 11 + i, seg, 0, 100)
        np.testing.assert_allclose(raw[i], w_ref[exp.segments], atol=1e-6, rtol=0)
    # per-image seeds: the same image alone gives the same map (no dependence on batching)
    alone = att.attribute(images[1:], targets[1:], seeds=[12])
    np.testing.assert_array_equal(alone[0], raw[1])


def test_top_k_positive_only(bb):
    image = _image(3)
    att = tfxai.get_attributer("lime", bb, n_samples=60, top_k=3, positive_only=True)
    raw = att.attribute(image[None], [1], seeds=[5])[0]
    res = att.last_results[0]
    pos = [k for k in res.ranking if res.weights[k] > 0][:3]
    kept = np.unique(res.segments[raw != 0])
    assert set(kept) == set(pos)
    assert (raw >= 0).all()
    full = res.paint()
    np.testing.assert_array_equal(raw[raw != 0], full[raw != 0])


def test_blur_and_bad_params(bb):
    with pytest.raises(ValueError, match="fill"):
        tfxai.get_attributer("lime", bb, fill="grey")
    with pytest.raises(ValueError, match="segmentation"):
        tfxai.get_attributer("lime", bb, segmentation="watershed")
    att = tfxai.get_attributer("lime", bb, n_samples=30, fill="blur",
                               segmentation="slic", n_segments=12)
    raw = att.attribute(_image(4)[None], [0], seeds=[1])
    assert np.isfinite(raw).all() and np.abs(raw).max() > 0
    assert att.method_params()["fill"] == "blur"


# ----------------------------------------------------------------------------- fewer model calls


def test_lime_rows_are_limes_draws_and_paired_rows_fold_them_over():
    n, num = 7, 9
    ref = np.random.RandomState(3).randint(0, 2, num * n).reshape(num, n)
    ref[0] = 1
    np.testing.assert_array_equal(lime_rows(np.random.RandomState(3), num, n, "lime"), ref)
    paired = lime_rows(np.random.RandomState(3), num, n, "paired")
    assert paired.shape == (num, n)
    np.testing.assert_array_equal(paired[0], 1)
    np.testing.assert_array_equal(paired[1::2], ref[1:5])  # lime's own draws, in order
    np.testing.assert_array_equal(paired[2::2], 1 - ref[1:5])  # each followed by its complement
    even = lime_rows(np.random.RandomState(3), 8, n, "paired")
    np.testing.assert_array_equal(even, paired[:8])
    with pytest.raises(ValueError, match="sampling"):
        lime_rows(np.random.RandomState(3), 8, n, "sobol")


@pytest.mark.parametrize("kw", [{"sampling": "paired"},
                                {"stop": "topk_stable", "block": 20, "patience": 1},
                                {"sampling": "paired", "stop": "topk_stable", "block": 20}])
def test_options_deterministic_per_seed(bb, kw):
    images = np.stack([_image(1), _image(2)])
    targets = np.array([2, 4])
    att = tfxai.get_attributer("lime", bb, n_samples=120, **kw)
    a = att.attribute(images, targets, seeds=[11, 12])
    used = [r.samples for r in att.last_results]
    b = tfxai.get_attributer("lime", bb, n_samples=120, batch_size=1, **kw).attribute(
        images, targets, seeds=[11, 12])
    np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)
    c = att.attribute(images, targets, seeds=[21, 22])
    assert not np.allclose(a, c)
    assert all(2 <= u <= 120 for u in used)
    default = tfxai.get_attributer("lime", bb, n_samples=120).attribute(images, targets,
                                                                           seeds=[11, 12])
    assert not np.allclose(a, default)


def test_stop_respects_n_samples_as_maximum(bb):
    image = _image(1)
    kw = dict(n_samples=130, seed=0)
    # never stable for 9 blocks: runs to the cap, the last block cut to 30 rows
    att = tfxai.get_attributer("lime", bb, stop="topk_stable", block=50, patience=9, **kw)
    raw = att.attribute(image[None], [2], seeds=[5])
    assert att.last_results[0].samples == 130
    # lime's masks in lime's order: a run to the cap is lime's explanation
    full = tfxai.get_attributer("lime", bb, **kw).attribute(image[None], [2], seeds=[5])
    np.testing.assert_allclose(raw, full, atol=1e-6, rtol=0)
    for patience, block in ((1, 10), (2, 20), (3, 10)):
        att = tfxai.get_attributer("lime", bb, stop="topk_stable", block=block,
                                   patience=patience, **kw)
        att.attribute(image[None], [2], seeds=[5])
        used = att.last_results[0].samples
        assert (patience + 1) * block <= used <= 130
        assert used % block == 0 or used == 130


def _grid_segments(h=32, cells=4):
    return (np.arange(h)[:, None] // (h // cells)) * cells + (np.arange(h)[None, :] // (h // cells))


def _two_superpixel_model(segments, a, b):
    """Softmax over [z, 0, 0] with z = 4·(mean of superpixel a + mean of b)/255 − 2: the
    explained probability depends on those two superpixels only."""

    def predict(imgs):
        imgs = np.asarray(imgs, np.float64)
        z = 4 * (imgs[:, segments == a].mean(axis=(1, 2)) + imgs[:, segments == b].mean(
            axis=(1, 2))) / 255 - 2
        e = np.exp(np.stack([z, np.zeros_like(z), np.zeros_like(z)], axis=1))
        return e / e.sum(axis=1, keepdims=True)

    return predict


@pytest.mark.parametrize("sampling", ["lime", "paired"])
def test_stop_finds_two_known_superpixels_with_fewer_samples(sampling):
    seg = _grid_segments()
    predict = _two_superpixel_model(seg, 5, 10)
    image = np.clip(180 + np.random.default_rng(0).normal(0, 20, (32, 32, 3)), 0, 255)
    for seed in range(5):
        full = lime_explain(image, predict, 0, seed, n_samples=1000, segmenter=lambda _: seg)
        assert full.top(2) == {5, 10} and full.samples == 1000
        fast = lime_explain(image, predict, 0, seed, n_samples=1000,
                            segmenter=lambda _: seg, sampling=sampling, stop="topk_stable",
                            stop_k=2, block=10, patience=2)
        assert fast.top(2) == {5, 10}
        assert fast.samples <= 60, fast.samples  # ≥ 16× fewer model calls


def test_sampling_params_validated_and_recorded(bb):
    p = tfxai.get_attributer("lime", bb).method_params()
    assert p["sampling"] == "lime" and p["stop"] == "none"
    assert not {"stop_k", "block", "patience"} & set(p)
    p = tfxai.get_attributer("lime", bb, sampling="paired", stop="topk_stable",
                             block=40).method_params()
    assert (p["sampling"], p["stop"], p["stop_k"], p["block"], p["patience"]) == (
        "paired", "topk_stable", 5, 40, 2)
    with pytest.raises(ValueError, match="sampling"):
        tfxai.get_attributer("lime", bb, sampling="sobol")
    with pytest.raises(ValueError, match="stop"):
        tfxai.get_attributer("lime", bb, stop="converged")
    with pytest.raises(ValueError, match="'patience' applies only to stop='topk_stable'"):
        tfxai.get_attributer("lime", bb, patience=3)
    with pytest.raises(ValueError, match="'block' must be even"):
        tfxai.get_attributer("lime", bb, sampling="paired", stop="topk_stable", block=25)
    with pytest.raises(ValueError, match="block"):
        tfxai.get_attributer("lime", bb, stop="topk_stable", block=1)
    with pytest.raises(ValueError, match="stop_k"):
        tfxai.get_attributer("lime", bb, stop="topk_stable", stop_k=0)
