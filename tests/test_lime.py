"""LIME adapter: identical to lime's own explain_instance for the same seed and segmentation."""

from __future__ import annotations

import numpy as np
import pytest
from lime import lime_image

import tfxai
from tfxai.attribution.superpixel import lime_explain, make_segmenter
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


@pytest.mark.parametrize("hide", ["0", "mean"])
def test_weights_identical_to_lime(bb, hide):
    image, seed, target = _image(1), 1234, 2
    seg = make_segmenter("quickshift")
    exp, w_ref = _lime_reference(bb, image, target, seed, seg, 0 if hide == "0" else None, 100)
    ours = lime_explain(image, lambda b: bb.predict(b, batch_size=100), target, seed,
                        num_samples=100, segmenter=seg, hide_color=hide)
    assert len(w_ref) >= 5, "segmentation too coarse for a meaningful test"
    np.testing.assert_array_equal(ours.segments, exp.segments)
    np.testing.assert_allclose(ours.weights, w_ref, atol=1e-6, rtol=0)
    assert np.abs(w_ref).max() > 1e-4  # the model does react to the perturbations
    assert ours.intercept == pytest.approx(exp.intercept[target], abs=1e-6)


def test_attributer_matches_lime_and_paints_superpixels(bb):
    images = np.stack([_image(1), _image(2)])
    targets = np.array([2, 4])
    att = tfxai.get_attributer("lime", bb, num_samples=100, seed=0, model_batch_size=64)
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
    att = tfxai.get_attributer("lime", bb, num_samples=60, top_k=3, positive_only=True)
    raw = att.attribute(image[None], [1], seeds=[5])[0]
    res = att.last_results[0]
    pos = [k for k in res.ranking if res.weights[k] > 0][:3]
    kept = np.unique(res.segments[raw != 0])
    assert set(kept) == set(pos)
    assert (raw >= 0).all()
    full = res.paint()
    np.testing.assert_array_equal(raw[raw != 0], full[raw != 0])


def test_blur_and_bad_params(bb):
    with pytest.raises(ValueError, match="hide_color"):
        tfxai.get_attributer("lime", bb, hide_color="grey")
    with pytest.raises(ValueError, match="segmentation"):
        tfxai.get_attributer("lime", bb, segmentation="watershed")
    att = tfxai.get_attributer("lime", bb, num_samples=30, hide_color="blur",
                               segmentation="slic", n_segments=12)
    raw = att.attribute(_image(4)[None], [0], seeds=[1])
    assert np.isfinite(raw).all() and np.abs(raw).max() > 0
    assert att.method_params()["hide_color"] == "blur"
