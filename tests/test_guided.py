"""Guided backprop and deconvnet: the ReLU rewrite, closed forms, and innvestigate."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import tensorflow as tf
from _tiny_models import backbone, corr, images, small_cnn, zoo_cnn

import tfxai
from tfxai.attribution.guided import relu_kind, relu_rewrite

L = tf.keras.layers


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
    model = zoo_cnn()
    new = relu_rewrite(model, _identity_grad)
    x = images(2)
    np.testing.assert_allclose(new(x).numpy(), model(x).numpy(), rtol=1e-5, atol=1e-6)
    names = [lay.name for lay in new.layers]
    assert any(n.endswith("_refused") for n in names)
    assert any(n.endswith("_override") for n in names)
    # weights are shared, not copied
    orig = {id(v) for v in model.weights}
    assert {id(v) for v in new.weights} <= orig
    # a rewrite whose gradient is the ordinary one gives the ordinary gradient
    xt = tf.constant(x)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(xt)
        a, b = model(xt)[:, 1], new(xt)[:, 1]
    np.testing.assert_allclose(tape.gradient(b, xt), tape.gradient(a, xt), rtol=1e-4, atol=1e-8)


def test_rewrite_sequential_and_nested():
    tf.keras.utils.set_random_seed(1)
    inner = tf.keras.Sequential(
        [L.Conv2D(3, 3, activation="relu", input_shape=(8, 8, 3)), L.ReLU()], name="inner"
    )
    inp = L.Input((8, 8, 3))
    out = L.Dense(2)(L.Flatten()(inner(inp)))
    outer = tf.keras.Model(inp, out)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 8, 8, 3)).astype(np.float32)
    for model in (inner, outer):
        new = relu_rewrite(model, _identity_grad)
        np.testing.assert_allclose(new(x).numpy(), model(x).numpy(), rtol=1e-5, atol=1e-6)
    nested = relu_rewrite(outer, _identity_grad).layers[1]
    assert any(lay.name.endswith("_refused") for lay in nested.layers)


def _mlp():
    """x (2,2,3) → flatten → W1 (relu) → W2: gradients in closed form."""
    tf.keras.utils.set_random_seed(3)
    inp = L.Input((2, 2, 3))
    h = L.Dense(6, activation="relu", use_bias=True)(L.Flatten()(inp))
    out = L.Dense(3, use_bias=False)(h)
    return tf.keras.Model(inp, out)


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
    bb = backbone(tf.keras.Model(inp, out))
    x = np.array([[[[-1.0, 3.0, 9.0]]]], np.float32)
    gb = tfxai.get_attributer("guided_backprop", bb).attribute(x, [1])
    dc = tfxai.get_attributer("deconvnet", bb).attribute(x, [2])
    np.testing.assert_array_equal(gb.ravel(), [0, 1, 0])
    np.testing.assert_array_equal(dc.ravel(), [0, 0, 1])  # deconvnet ignores the forward gate


def test_no_relu_equals_saliency():
    """EfficientNet-style swish/sigmoid networks are left alone: guided == plain gradient."""
    tf.keras.utils.set_random_seed(2)
    inp = L.Input((8, 8, 3))
    x = L.Conv2D(4, 3, activation="swish")(L.Rescaling(1 / 255)(inp))
    x = L.Activation("sigmoid")(x)
    out = L.Dense(3)(L.GlobalAveragePooling2D()(x))
    bb = backbone(tf.keras.Model(inp, out))
    x = images(2, size=8)
    sal = tfxai.get_attributer("saliency", bb).attribute(x, [0, 1])
    for name in ("guided_backprop", "deconvnet"):
        np.testing.assert_allclose(tfxai.get_attributer(name, bb).attribute(x, [0, 1]), sal,
                                   rtol=1e-5, atol=1e-9)


def test_cached_model_and_no_retrace():
    bb = backbone(small_cnn())
    att = tfxai.get_attributer("guided_backprop", bb, batch_size=2)
    model = att.model
    att.attribute(images(5), [0, 1, 2, 3, 4])
    att.attribute(images(3), [0, 1, 2])
    assert att.model is model
    assert att._fn.experimental_get_tracing_count() == 1


_INNVESTIGATE = textwrap.dedent("""
    import sys, json
    import numpy as np
    import tensorflow as tf
    tf.compat.v1.disable_eager_execution()
    import innvestigate
    model_path, x_path, t_path, out_path = sys.argv[1:5]
    model = tf.keras.models.load_model(model_path, compile=False)
    x = np.load(x_path)
    t = np.load(t_path)
    out = {}
    for name in ("guided_backprop", "deconvnet"):
        analyzer = innvestigate.create_analyzer(name, model, neuron_selection_mode="index")
        out[name] = np.asarray(analyzer.analyze(x, neuron_selection=[int(v) for v in t]))
    np.savez(out_path, **out)
""")


def test_agrees_with_innvestigate(tmp_path):
    """innvestigate needs graph mode: it runs in a subprocess on the saved model.

    innvestigate starts its modified backward pass from the selected logit's *value* (its
    ``_head_mapping``), we start from 1: the two agree up to the factor logit_t, so the test
    explains targets with a positive logit (both ReLU rules are then scale-equivariant)."""
    model = small_cnn()
    bb = backbone(model)
    x = images(6)
    logits = bb.predict_logits(x)
    t = logits.argmax(axis=1)
    keep = logits[np.arange(len(x)), t] > 0
    assert keep.sum() >= 3
    x, t = x[keep], t[keep]
    model.save(tmp_path / "m.h5")
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "t.npy", t)
    script = tmp_path / "run_innvestigate.py"
    script.write_text(_INNVESTIGATE)
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "m.h5"), str(tmp_path / "x.npy"),
         str(tmp_path / "t.npy"), str(tmp_path / "out.npz")],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ref = np.load(tmp_path / "out.npz")
    report = {}
    for name in ("guided_backprop", "deconvnet"):
        ours = tfxai.get_attributer(name, bb).attribute(x, t)
        for i in range(len(x)):
            report[f"{name}[{i}]"] = corr(ours[i], ref[name][i])
    assert min(report.values()) > 0.99, json.dumps(report)
