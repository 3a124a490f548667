"""Saliency and the shared gradient helpers; every method on the five Keras backbones (slow)."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import tensorflow as tf
from _tiny_models import backbone, images, small_cnn, zoo_cnn

import tfxai
from tfxai.attribution.gradients import (
    accumulate_gradients,
    input_gradients,
    rows_normal,
    rows_uniform,
    target_gradients,
)
from tfxai.backend import keras


def _preprocess(x):
    """A non-trivial affine preprocessing (caffe-like: BGR, mean subtraction)."""
    return x[..., ::-1] - tf.constant([103.9, 116.8, 123.7])


def test_saliency_equals_gradient_tape():
    model = zoo_cnn()
    bb = tfxai.load_model(model, preprocess=_preprocess, output="probabilities")
    x = images(3)
    t = np.array([4, 0, 2])
    raw = tfxai.get_attributer("saliency", bb, batch_size=2).attribute(x, t)
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        logits = bb.logit_model(_preprocess(xt), training=False)
        score = tf.reduce_sum(logits * tf.one_hot(t, logits.shape[-1]))
    expect = tape.gradient(score, xt).numpy()
    np.testing.assert_allclose(raw, expect, rtol=1e-5, atol=1e-6 * np.abs(expect).max())
    np.testing.assert_allclose(
        target_gradients(bb.logits, xt, tf.constant(t, tf.int32)).numpy(), expect, rtol=1e-5,
        atol=1e-6 * np.abs(expect).max(),
    )
    np.testing.assert_allclose(input_gradients(bb, xt, tf.constant(t, tf.int32)).numpy(),
                               expect, rtol=1e-5, atol=1e-6 * np.abs(expect).max())


def test_saliency_predicted_target_and_map():
    bb = backbone(small_cnn())
    x = images(2)
    att = tfxai.get_attributer("saliency", bb)
    pred = bb.predict_logits(x).argmax(1)
    np.testing.assert_array_equal(att.attribute(x), att.attribute(x, pred))
    raw = att.attribute(x)
    np.testing.assert_allclose(att.to_map(raw), np.abs(raw).max(-1) / np.abs(raw).max((1, 2, 3))
                               [:, None, None], rtol=1e-6)


def test_accumulate_gradients_equals_explicit_sum():
    bb = backbone(small_cnn())
    x = tf.constant(images(2))
    t = tf.constant([1, 3], tf.int32)
    scales = tf.constant([0.2, 0.5, 1.0])

    def rows(img, k):
        s = tf.reshape(tf.gather(scales, k), (-1, 1, 1, 1))
        return tf.gather(x, img) * s, s

    fn = tf.function(lambda: accumulate_gradients(bb.logits, x, t, 3, 4, rows))
    out = fn().numpy()
    expect = sum(float(s) * target_gradients(bb.logits, x * s, t).numpy() for s in scales)
    np.testing.assert_allclose(out, expect, rtol=1e-5, atol=1e-6 * np.abs(expect).max())


def test_rows_random_depend_only_on_their_seed():
    a = rows_normal(tf.constant([1, 2, 3]), 7, (4, 4)).numpy()
    b = rows_normal(tf.constant([3]), 7, (4, 4)).numpy()
    np.testing.assert_array_equal(a[2], b[0])
    assert not np.allclose(a[0], a[1])
    assert not np.allclose(a[0], rows_normal(tf.constant([1]), 8, (4, 4)).numpy()[0])
    u = rows_uniform(tf.constant([1, 2]), 0, (100,)).numpy()
    assert 0 <= u.min() and u.max() < 1


def test_unknown_parameter():
    with pytest.raises(ValueError, match="unknown parameter"):
        tfxai.get_attributer("saliency", backbone(small_cnn()), steps=3)


GRADIENT_METHODS = {
    "saliency": {},
    "guided_backprop": {},
    "deconvnet": {},
    "gradcam": {},
    "gradcam_pp": {},
    "guided_gradcam": {},
    "integrated_gradients": {"steps": 4, "internal_batch_size": 4},
    "deeplift": {},
    "gradient_shap": {"n_samples": 2, "internal_batch_size": 4},
    "saliency+smoothgrad": {"n_samples": 2},
}


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("TFXAI_SLOW") != "1", reason="set TFXAI_SLOW=1 (builds the "
                    "five Keras backbones with random weights, several minutes)")
def test_every_method_on_the_five_backbones():
    """Each method runs on vgg16, resnet50, densenet121, efficientnetb0 and inceptionv3
    (weights="none", one image) and gives finite, non-zero attributions (CAMs: finite); DeepLIFT
    sums to Δlogit on each."""
    failures = []
    for name in ("vgg16", "resnet50", "densenet121", "efficientnetb0", "inceptionv3"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            bb = tfxai.load_model(name, weights="none")
        x = np.random.default_rng(0).uniform(0, 255, (1, *bb.input_shape)).astype(np.float32)
        t = np.array([3])
        for method, params in GRADIENT_METHODS.items():
            if method == "gradient_shap":
                params = {**params, "background": np.full((2, *bb.input_shape), 100.0, np.float32)}
            raw = tfxai.get_attributer(method, bb, **params).attribute(x, t)
            # a random-weight network's ReLU(Σ α_k A^k) may be all zero: CAMs only need to be finite
            nonzero = "gradcam" in method or np.abs(raw).max() > 0
            if not (np.isfinite(raw).all() and nonzero):
                failures.append(f"{name}/{method}")
            if method == "deeplift":
                delta = bb.predict_logits(x)[0, 3] - bb.predict_logits(np.zeros_like(x))[0, 3]
                if abs(raw.sum() - delta) > 1e-3 * abs(delta):
                    failures.append(f"{name}/deeplift sum {raw.sum()} != {delta}")
        del bb
        keras.backend.clear_session()
    assert not failures, failures
