"""DeepLIFT (Rescale): summation-to-delta, closed forms, shap DeepExplainer, real backbones."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import tensorflow as tf
from _tiny_models import backbone, corr, images, small_cnn, zoo_cnn

import tfxai
from tfxai.attribution.deeplift import DeepLiftWarning, gaussian_blur
from tfxai.backend import keras

L = keras.layers


def _delta(bb, att, x, t):
    ref = np.broadcast_to(att.reference(tf.constant(x)).numpy(), x.shape)
    idx = np.arange(len(x))
    return bb.predict_logits(x)[idx, t] - bb.predict_logits(ref)[idx, t]


@pytest.mark.parametrize("reference", ["black", "gray", "blur"])
def test_summation_to_delta_on_every_layer_kind(reference):
    """Fused/separate ReLU, ReLU6, BN, max/avg/global pooling, add, concatenate, swish, SE
    sigmoid gate (Multiply), dropout, padding, softmax head stripped to logits."""
    bb = backbone(zoo_cnn(), output="probabilities")
    x = images(4)
    t = np.array([0, 1, 2, 3])
    att = tfxai.get_attributer("deeplift", bb, reference=reference)
    raw = att.attribute(x, t)
    assert raw.shape == x.shape
    delta = _delta(bb, att, x, t)
    assert np.all(np.abs(delta) > 1e-3)
    np.testing.assert_allclose(raw.reshape(4, -1).sum(axis=1), delta, rtol=1e-3, atol=0)


def test_linear_model_closed_form():
    keras.utils.set_random_seed(4)
    inp = L.Input((4, 4, 3))
    out = L.Dense(3)(L.Flatten()(inp))
    model = keras.Model(inp, out)
    bb = backbone(model)
    w = model.layers[-1].get_weights()[0]
    x = images(2, size=4)
    raw = tfxai.get_attributer("deeplift", bb, reference="gray").attribute(x, [0, 2])
    for i, t in enumerate([0, 2]):
        np.testing.assert_allclose(raw[i].ravel(), (x[i].ravel() - 127.5) * w[:, t], rtol=1e-5,
                                   atol=1e-6)


def test_rescale_rule_single_unit():
    """y = relu(x·w) on one pixel: the multiplier is Δy/Δz, not the gradient."""
    inp = L.Input((1, 1, 3))
    dense = L.Dense(1, activation="relu", use_bias=False)
    out = L.Concatenate()([dense(L.Flatten()(inp)), L.Flatten()(inp)[:, :1]])
    model = keras.Model(inp, out)
    dense.set_weights([np.array([[1.0], [-2.0], [0.5]], np.float32)])
    bb = backbone(model)
    x = np.array([[[[100.0, 20.0, 10.0]]]], np.float32)  # z = 65 > 0, reference z' = -127.5·0.5
    raw = tfxai.get_attributer("deeplift", bb, reference="gray").attribute(x, [0])
    dz = (x.ravel() - 127.5) @ np.array([1.0, -2.0, 0.5])
    z_ref = 127.5 * (1.0 - 2.0 + 0.5)
    m = (65.0 - max(z_ref, 0.0)) / dz
    np.testing.assert_allclose(raw.ravel(), (x.ravel() - 127.5) * np.array([1.0, -2.0, 0.5]) * m,
                               rtol=1e-5)
    assert raw.sum() == pytest.approx(65.0, rel=1e-5)


def test_agrees_with_shap_deep_explainer():
    """shap's eager DeepExplainer with the black reference as its single background.

    (Its TF2 eager path has no batch-norm handler, shap issues #1110/#1761, hence the small CNN
    without BN; BN is covered by the summation test.)"""
    shap = pytest.importorskip("shap")
    model = small_cnn()
    bb = backbone(model)
    x = images(3)
    t = np.array([0, 2, 4])
    ours = tfxai.get_attributer("deeplift", bb).attribute(x, t)
    explainer = shap.DeepExplainer(model, np.zeros((1, *x.shape[1:]), np.float32))
    sv = np.asarray(explainer.shap_values(x, check_additivity=False))  # (N, H, W, C, classes)
    ref = np.stack([sv[i, ..., t[i]] for i in range(len(x))])
    for i in range(len(x)):
        assert corr(ours[i], ref[i]) > 0.99
    np.testing.assert_allclose(ours, ref, rtol=1e-3, atol=1e-6 * np.abs(ref).max())


def test_batch_independent_and_compiled_once():
    bb = backbone(zoo_cnn(), output="probabilities")
    x = images(5)
    t = np.array([0, 1, 2, 3, 4])
    att = tfxai.get_attributer("deeplift", bb, batch_size=2)
    a = att.attribute(x, t)
    b = tfxai.get_attributer("deeplift", bb, batch_size=5).attribute(x, t)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)
    assert att._fn.experimental_get_tracing_count() == 1


def test_unknown_layer_warns():
    inp = L.Input((4, 4, 3))
    x = L.Lambda(lambda v: tf.square(v))(inp)
    model = keras.Model(inp, L.Dense(2)(L.Flatten()(x)))
    with pytest.warns(DeepLiftWarning, match="lambda"):
        tfxai.get_attributer("deeplift", backbone(model))


def test_bad_reference():
    with pytest.raises(ValueError, match="reference"):
        tfxai.get_attributer("deeplift", backbone(small_cnn()), reference="white")


def test_gaussian_blur_preserves_constants_and_mass():
    x = np.full((1, 20, 20, 3), 77.0, np.float32)
    np.testing.assert_allclose(gaussian_blur(tf.constant(x), 5.0).numpy(), x, rtol=1e-5)
    y = images(1, size=20)
    b = gaussian_blur(tf.constant(y), 5.0).numpy()
    assert b.std() < y.std()
    assert b.mean() == pytest.approx(y.mean(), rel=0.05)


@pytest.fixture(scope="module")
def keras_backbones():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {name: tfxai.load_model(name, weights="none") for name in ("vgg16", "efficientnetb0")}


@pytest.mark.parametrize("name", ["vgg16", "efficientnetb0"])
def test_rewrites_on_keras_backbones(keras_backbones, name):
    """The real layers of VGG16 (fused ReLUs, max pooling) and EfficientNetB0 (swish, SE
    sigmoid gates, BN, add, normalisation): DeepLIFT sums to Δlogit; the guided rewrite keeps
    the forward pass and equals the plain gradient on ReLU-free EfficientNet."""
    bb = keras_backbones[name]
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (1, *bb.input_shape)).astype(np.float32)
    t = np.array([7])
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeepLiftWarning)
        att = tfxai.get_attributer("deeplift", bb)
    raw = att.attribute(x, t)
    delta = _delta(bb, att, x, t)
    assert abs(raw.sum() - delta[0]) <= 1e-3 * abs(delta[0])
    guided = tfxai.get_attributer("guided_backprop", bb)
    np.testing.assert_allclose(guided.logits(tf.constant(x)).numpy(), bb.predict_logits(x),
                               rtol=1e-4, atol=1e-4 * np.abs(bb.predict_logits(x)).max())
    g = guided.attribute(x, t)
    assert np.isfinite(g).all() and np.abs(g).max() > 0
    if name == "efficientnetb0":
        sal = tfxai.get_attributer("saliency", bb).attribute(x, t)
        np.testing.assert_allclose(g, sal, rtol=1e-4, atol=1e-6 * np.abs(sal).max())


def test_closed_form_derivatives_match_autodiff():
    from tfxai.attribution.deeplift import _DERIVATIVES

    z = tf.constant(np.linspace(-8, 8, 101), tf.float32)
    fns = {"relu": tf.nn.relu, "relu6": tf.nn.relu6, "sigmoid": tf.sigmoid, "swish": tf.nn.silu,
           "silu": tf.nn.silu, "tanh": tf.tanh}
    assert set(fns) == set(_DERIVATIVES)
    for name, f in fns.items():
        with tf.GradientTape() as tape:
            tape.watch(z)
            y = f(z)
        np.testing.assert_allclose(_DERIVATIVES[name](z), tape.gradient(y, z), atol=1e-6)


def test_equal_input_and_reference_uses_the_derivative():
    """Where z = z' the multiplier falls back to f'(z): an image equal to the reference gets
    the plain gradient times zero, and an image differing in one pixel stays finite."""
    bb = backbone(zoo_cnn(), output="probabilities")
    x = np.zeros((1, 16, 16, 3), np.float32)
    att = tfxai.get_attributer("deeplift", bb)
    np.testing.assert_array_equal(att.attribute(x, [1]), 0.0)
    x[0, 3, 4, 1] = 1e-3
    raw = att.attribute(x, [1])
    assert np.isfinite(raw).all()
    delta = _delta(bb, att, x, np.array([1]))
    assert raw.sum() == pytest.approx(delta[0], rel=1e-2, abs=1e-7)
