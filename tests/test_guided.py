"""Guided backprop and deconvnet: the ReLU rewrite and closed forms (the comparison with
innvestigate is in test_innvestigate.py)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from _rewritten import assert_model_cached_and_traced_once
from _tiny_models import backbone, images, zoo_cnn

import tfxai
from tfxai.attribution.guided import relu_kind, relu_rewrite
from tfxai.backend import keras

L = keras.layers


def _identity_grad(x, dy, f):
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = f(x)
    return tape.gradient(y, x, output_gradients=dy)


def test_relu_kinds():
    assert relu_kind(L.Conv2D(2, 1, activation="relu")) == "fused"
    assert relu_kind(L.Dense(2, activation=tf.nn.relu6)) == "fused"
    assert relu_kind(L.Activation("relu")) == "layer"
    assert relu_kind(L.ReLU(max_value=6.0)) == "layer"
    assert relu_kind(L.ReLU(negative_slope=0.1)) is None
    assert relu_kind(L.Activation("swish")) is None
    assert relu_kind(L.Conv2D(2, 1, activation="sigmoid")) is None
    assert relu_kind(L.Conv2D(2, 1)) is None


def test_rewrite_keeps_forward_and_shares_weights():
    bb = backbone(zoo_cnn(), output="probabilities")
    new = relu_rewrite(bb, _identity_grad, "test")
    x = images(2)
    np.testing.assert_allclose(new(x).numpy(), bb.logit_model(x).numpy(), rtol=1e-5, atol=1e-6)
    names = [lay.name for lay in new.layers]
    assert any(n.endswith("_refused") for n in names)
    assert any(n.endswith("_override") for n in names)
    # weights are shared, not copied
    orig = {id(v) for v in bb.keras_model.weights}
    assert {id(v) for v in new.weights} <= orig
    # a rewrite whose gradient is the ordinary one gives the ordinary gradient
    xt = tf.constant(x)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(xt)
        a, b = bb.logit_model(xt)[:, 1], new(xt)[:, 1]
    np.testing.assert_allclose(tape.gradient(b, xt), tape.gradient(a, xt), rtol=1e-4, atol=1e-8)


def test_rewrite_sequential_and_nested():
    keras.utils.set_random_seed(1)
    inner = keras.Sequential(
        [L.Input((8, 8, 3)), L.Conv2D(3, 3, activation="relu"), L.ReLU()], name="inner"
    )
    inp = L.Input((8, 8, 3))
    out = L.Dense(2)(L.Flatten()(inner(inp)))
    outer = keras.Model(inp, out)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 8, 8, 3)).astype(np.float32)
    for model in (inner, outer):
        new = relu_rewrite(backbone(model), _identity_grad, "test")
        np.testing.assert_allclose(new(x).numpy(), model(x).numpy(), rtol=1e-5, atol=1e-6)
    # the nested model's ReLUs are rewritten in the one flat graph
    names = [lay.name for lay in relu_rewrite(backbone(outer), _identity_grad, "test").layers]
    assert any(n.endswith("_refused") for n in names) and any(n.endswith("_override") for n in names)
    assert "inner" not in names


def test_subclassed_sub_model_is_refused_by_name():
    class Block(keras.Model):
        def __init__(self):
            super().__init__(name="my_block")
            self.conv = L.Conv2D(3, 3, activation="relu")

        def call(self, x):
            return self.conv(x)

    keras.utils.set_random_seed(1)
    inp = L.Input((8, 8, 3))
    model = keras.Model(inp, L.Dense(2)(L.Flatten()(Block()(inp))))
    bb = backbone(model)  # forward passes and plain gradients work
    x = images(2, size=8)
    assert tfxai.get_attributer("saliency", bb).attribute(x, [0, 1]).shape == x.shape
    for method in ("guided_backprop", "deconvnet", "deeplift"):
        try:
            tfxai.get_attributer(method, bb)
        except ValueError as exc:
            assert "my_block" in str(exc) and "subclassed" in str(exc)
        else:
            raise AssertionError(f"{method} accepted a model it cannot rewrite")


def _mlp():
    """x (2,2,3) → flatten → W1 (relu) → W2: gradients in closed form."""
    keras.utils.set_random_seed(3)
    inp = L.Input((2, 2, 3))
    h = L.Dense(6, activation="relu", use_bias=True)(L.Flatten()(inp))
    out = L.Dense(3, use_bias=False)(h)
    return keras.Model(inp, out)


def test_closed_form_on_mlp():
    model = _mlp()
    bb = backbone(model)
    w1, b1 = model.layers[2].get_weights()
    (w2,) = model.layers[3].get_weights()
    x = np.random.default_rng(0).uniform(0, 1, (4, 2, 2, 3)).astype(np.float32)
    t = np.array([0, 1, 2, 0])
    gb = tfxai.get_attributer("guided_backprop", bb).attribute(x, t).reshape(4, -1)
    dc = tfxai.get_attributer("deconvnet", bb).attribute(x, t).reshape(4, -1)
    sal = tfxai.get_attributer("saliency", bb).attribute(x, t).reshape(4, -1)
    z = x.reshape(4, -1) @ w1 + b1
    for i in range(4):
        up = w2[:, t[i]]
        np.testing.assert_allclose(sal[i], w1 @ (up * (z[i] > 0)), rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(gb[i], w1 @ (np.maximum(up, 0) * (z[i] > 0)), rtol=1e-5,
                                   atol=1e-7)
        np.testing.assert_allclose(dc[i], w1 @ np.maximum(up, 0), rtol=1e-5, atol=1e-7)


def test_relu6_gate():
    inp = L.Input((1, 1, 3))
    out = L.Flatten()(L.ReLU(max_value=6.0)(inp))
    bb = backbone(keras.Model(inp, out))
    x = np.array([[[[-1.0, 3.0, 9.0]]]], np.float32)
    gb = tfxai.get_attributer("guided_backprop", bb).attribute(x, [1])
    dc = tfxai.get_attributer("deconvnet", bb).attribute(x, [2])
    np.testing.assert_array_equal(gb.ravel(), [0, 1, 0])
    np.testing.assert_array_equal(dc.ravel(), [0, 0, 1])  # deconvnet ignores the forward gate


def test_no_relu_equals_saliency():
    """EfficientNet-style swish/sigmoid networks are left alone: guided == plain gradient."""
    keras.utils.set_random_seed(2)
    inp = L.Input((8, 8, 3))
    x = L.Conv2D(4, 3, activation="swish")(L.Rescaling(1 / 255)(inp))
    x = L.Activation("sigmoid")(x)
    out = L.Dense(3)(L.GlobalAveragePooling2D()(x))
    bb = backbone(keras.Model(inp, out))
    x = images(2, size=8)
    sal = tfxai.get_attributer("saliency", bb).attribute(x, [0, 1])
    for name in ("guided_backprop", "deconvnet"):
        np.testing.assert_allclose(tfxai.get_attributer(name, bb).attribute(x, [0, 1]), sal,
                                   rtol=1e-5, atol=1e-9)


def test_cached_model_and_no_retrace():
    assert_model_cached_and_traced_once("guided_backprop")

