"""innvestigate as an optional reference, in a child process under Keras 2 (``tf_keras``).

* the Keras 3 → Keras 2 config translator (no worker needed);
* the install message when innvestigate or tf_keras is missing (a Python that hides them, and
  the availability check fed with fake versions);
* with innvestigate installed: tfxai's guided backprop and deconvnet equal innvestigate's, and
  innvestigate's LRP-ε conserves the logit, on ``small_cnn``; a nested VGG16-style model and
  ``zoo_cnn`` (every layer kind of the backbones) are rebuilt exactly; a killed or stuck worker
  is reported, never waited on.

A worker costs a few seconds to start (TensorFlow in graph mode), so the tests share
module-scoped backbones; worker tests skip, with the install commands, when innvestigate or
tf_keras is not installed.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
from _tiny_models import backbone, corr, images, small_cnn, zoo_cnn

import tfxai
from tfxai.attribution import innvestigate as inv
from tfxai.attribution._innvestigate_config import ConfigTranslationError, to_keras2
from tfxai.attribution.base import METHODS
from tfxai.backend import keras

L = keras.layers
AVAILABLE, REASON = inv.innvestigate_available()
needs_worker = pytest.mark.skipif(not AVAILABLE, reason=REASON)
TF_MINOR = ".".join(tf.__version__.split(".")[:2])


@pytest.fixture(autouse=True)
def _fresh_layer_names(request):
    """The translator tests look layers up by Keras's automatic names (``conv2d``,
    ``dense_1``); those come from a process-wide counter, so reset it before each of them."""
    if request.node.name.startswith("test_translator"):
        keras.backend.clear_session()
    yield


def _zero_biases(model: keras.Model) -> keras.Model:
    for layer in model.layers:
        if getattr(layer, "bias", None) is not None:
            layer.bias.assign(np.zeros(layer.bias.shape, np.float32))
    return model


# --------------------------------------------------------------------------- no worker needed


def test_registers_no_method():
    assert not [n for n, cls in METHODS.items() if cls.__module__ == inv.__name__]
    assert not any("innvestigate" in name for name in tfxai.list_methods())


def _by_name(config: dict) -> dict:
    return {e["name"] if "name" in e else e["config"]["name"]: e
            for e in config["config"]["layers"]}


def test_translator_small_cnn():
    model = small_cnn()
    cfg3 = keras.saving.serialize_keras_object(model)
    weights = {lay.name: [(v.name, v.numpy()) for v in lay.weights] for lay in model.layers
               if lay.weights}
    cfg2, w2 = to_keras2(cfg3, weights)
    text = json.dumps(cfg2)
    for gone in ("batch_shape", "DTypePolicy", "registered_name", "build_config",
                 "__keras_tensor__", "kernel_initializer", "quantization_config"):
        assert gone not in text, gone
    layers = _by_name(cfg2)
    inp = layers["input_layer"]["config"]
    assert list(inp["batch_input_shape"]) == [None, 16, 16, 3] and inp["dtype"] == "float32"
    assert layers["conv2d"]["config"]["dtype"] == "float32"
    assert layers["conv2d"]["inbound_nodes"] == [[["rescaling", 0, 0, {}]]]
    assert cfg2["config"]["output_layers"] == [["dense_1", 0, 0]]
    # Rescaling(1/255) becomes an equivalent diagonal Dense without bias (innvestigate's LRP
    # refuses Rescaling)
    resc = layers["rescaling"]
    assert resc["class_name"] == "Dense" and resc["config"]["units"] == 3
    assert not resc["config"]["use_bias"]
    (name, kernel), = w2["rescaling"]
    np.testing.assert_allclose(kernel, np.eye(3) / 255.0, rtol=1e-6)
    assert "rescaling" not in weights  # the input is not modified
    # without rewrites the layer stays
    assert _by_name(to_keras2(cfg3, weights, rewrite=False)[0])["rescaling"]["class_name"] \
        == "Rescaling"


def test_translator_rewrites_and_renames():
    inp = L.Input((4, 4, 3))
    x = L.Normalization(mean=[1.0, 2.0, 3.0], variance=[4.0, 1.0, 0.25])(inp)
    x = L.ReLU()(x)
    x = L.LeakyReLU(negative_slope=0.2)(x)
    x = L.BatchNormalization()(x)
    out = L.Dense(2)(L.Flatten()(x))
    model = keras.Model(inp, out)
    cfg2, w2 = to_keras2(keras.saving.serialize_keras_object(model), {})
    layers = _by_name(cfg2)
    assert layers["re_lu"]["class_name"] == "Activation"
    assert layers["re_lu"]["config"]["activation"] == "relu"
    assert layers["leaky_re_lu"]["config"]["alpha"] == pytest.approx(0.2)
    assert "synchronized" not in layers["batch_normalization"]["config"]
    kernel, bias = (a for _, a in w2["normalization"])
    np.testing.assert_allclose(np.diag(kernel), [0.5, 1.0, 2.0])
    np.testing.assert_allclose(bias, [-0.5, -2.0, -6.0])


def test_translator_nested_sequential_node_index():
    """Keras 2 numbers the calls of a nested Sequential (with an InputLayer) from 1."""
    inner = keras.Sequential([L.Input((8, 8, 3)), L.Conv2D(2, 3)], name="inner")
    inp = L.Input((8, 8, 3))
    out = L.Dense(2)(L.GlobalAveragePooling2D()(inner(inp)))
    cfg2, _ = to_keras2(keras.saving.serialize_keras_object(keras.Model(inp, out)), {})
    layers = _by_name(cfg2)
    assert layers["inner"]["class_name"] == "Sequential"
    assert layers["inner"]["inbound_nodes"][0][0][:3] == [inp._keras_history[0].name, 0, 0]
    assert layers["global_average_pooling2d"]["inbound_nodes"] == [[["inner", 1, 0, {}]]]


def test_translator_refuses_what_keras2_cannot_rebuild():
    inp = L.Input((4,))
    out = L.Lambda(lambda t: t * 2, name="double")(inp)
    with pytest.raises(ConfigTranslationError, match="double.*Lambda"):
        to_keras2(keras.saving.serialize_keras_object(keras.Model(inp, out)), {})
    inp = L.Input((4,))
    out = L.Dense(2, activation="hard_silu", name="hs")(inp)
    with pytest.raises(ConfigTranslationError, match="hs.*hard_silu"):
        to_keras2(keras.saving.serialize_keras_object(keras.Model(inp, out)), {})


def test_export_handles_tfxai_graph_wrappers():
    """A logit model whose softmax head was stripped holds a FusedActivation: it is written as
    the wrapped layer with a linear activation."""
    bb = backbone(zoo_cnn(), output="probabilities")
    cfg3 = inv.keras3_config(bb.logit_model)
    head = [e for e in cfg3["config"]["layers"] if e["class_name"] == "Dense"]
    assert [e["config"]["activation"] for e in head] == ["linear"]


def _fake_probe(monkeypatch, **info):
    monkeypatch.setattr(inv, "_probe", lambda python: info)


def test_availability_messages(monkeypatch):
    _fake_probe(monkeypatch, python="3.12.1", tensorflow="2.21.0", tf_keras=None,
                innvestigate=None)
    ok, reason = inv.innvestigate_available("/opt/py/bin/python")
    assert not ok
    assert 'pip install "tf_keras~=2.21.0"' in reason
    assert "pip install --no-deps --ignore-requires-python innvestigate==2.1.2" in reason
    assert "/opt/py/bin/python -m pip" in reason
    assert "tf_keras (Keras 2) is not installed" in reason and "innvestigate is not" in reason

    _fake_probe(monkeypatch, python="3.13.0", tensorflow="2.20.1", tf_keras="2.19.0",
                innvestigate="2.1.2")
    ok, reason = inv.innvestigate_available("py")
    assert not ok and "tf_keras 2.19.0 does not match TensorFlow 2.20.1" in reason
    assert 'pip install "tf_keras~=2.20.0"' in reason

    # TensorFlow 2.14 (Keras 2 as tf.keras) on Python 3.11: no tf_keras, plain --no-deps
    _fake_probe(monkeypatch, python="3.11.9", tensorflow="2.14.1", tf_keras=None,
                innvestigate=None)
    ok, reason = inv.innvestigate_available("py")
    assert not ok and 'install "tf_keras' not in reason
    assert "pip install --no-deps innvestigate==2.1.2" in reason

    _fake_probe(monkeypatch, python="3.11.9", tensorflow="2.14.1", tf_keras=None,
                innvestigate="2.1.2")
    assert inv.innvestigate_available("py")[0]


def test_missing_innvestigate_raises_with_install_commands(monkeypatch):
    _fake_probe(monkeypatch, python="3.12.1", tensorflow="2.21.0", tf_keras=None,
                innvestigate=None)
    bb = backbone(small_cnn())
    with pytest.raises(inv.InnvestigateUnavailableError, match="innvestigate is not installed") \
            as info:
        inv.analyze(bb, "lrp.epsilon", images(1), [0])
    assert isinstance(info.value, ImportError)
    assert any('pip install "tf_keras~=2.21.0"' in c for c in info.value.install)
    assert any("--no-deps" in c and "innvestigate==2.1.2" in c for c in info.value.install)
    with pytest.raises(inv.InnvestigateUnavailableError):
        inv.InnvestigateWorker("unused.h5")


def test_python_without_innvestigate(tmp_path):
    """A real interpreter that does not see innvestigate and tf_keras (hidden at start-up)."""
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(
        "import sys\nsys.modules['innvestigate'] = None\nsys.modules['tf_keras'] = None\n")
    python = tmp_path / "python"
    python.write_text(f'#!/bin/sh\nPYTHONPATH="{hide}${{PYTHONPATH:+:$PYTHONPATH}}" '
                      f'exec "{sys.executable}" "$@"\n')
    python.chmod(python.stat().st_mode | stat.S_IXUSR)
    ok, reason = inv.innvestigate_available(python)
    assert not ok, reason
    assert f'pip install "tf_keras~={TF_MINOR}.0"' in reason
    assert "--no-deps" in reason and "innvestigate==2.1.2" in reason
    t0 = time.monotonic()
    with pytest.raises(inv.InnvestigateUnavailableError, match="innvestigate is not installed"):
        inv.analyze(backbone(small_cnn()), "guided_backprop", images(1), [0], python=python)
    assert time.monotonic() - t0 < 30  # refused before any worker is started


# --------------------------------------------------------------------------- with the worker


@pytest.fixture(scope="module")
def cnn():
    """small_cnn with zero biases (LRP-ε then conserves the logit exactly)."""
    bb = backbone(_zero_biases(small_cnn()))
    yield bb
    inv.close_workers()


def _positive_targets(bb, x):
    """innvestigate starts the modified backward pass from the target logit's value, tfxai from
    1: they agree up to the factor logit_t, so only targets with a positive logit are compared
    (both ReLU rules are scale-equivariant)."""
    logits = bb.predict_logits(x)
    t = logits.argmax(axis=1)
    keep = logits[np.arange(len(x)), t] > 0
    assert keep.sum() >= 3
    return x[keep], t[keep]


@needs_worker
def test_guided_backprop_and_deconvnet_agree_with_innvestigate(cnn):
    x, t = _positive_targets(cnn, images(6))
    report = {}
    for name in ("guided_backprop", "deconvnet"):
        ref = inv.analyze(cnn, name, x, t)
        ours = tfxai.get_attributer(name, cnn).attribute(x, t)
        for i in range(len(x)):
            report[f"{name}[{i}]"] = corr(ours[i], ref[i])
    assert min(report.values()) > 0.999, json.dumps(report)


@needs_worker
def test_lrp_epsilon_conserves_the_logit(cnn):
    x = images(4, seed=1)
    t = np.array([0, 1, 2, 3])
    rel = inv.analyze(cnn, "lrp.epsilon", x, t, epsilon=1e-7)
    assert rel.shape == x.shape and rel.dtype == np.float32
    logits = cnn.predict_logits(x)[np.arange(4), t]
    assert np.abs(logits).min() > 1e-3  # a meaningful logit to conserve
    np.testing.assert_allclose(rel.reshape(4, -1).sum(1), logits, rtol=1e-3)
    # the Rescaling(1/255) layer passes relevance through, so the result is the relevance of
    # the image itself: for a bias-free ReLU network LRP-0 is gradient × input
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        z = tf.reduce_sum(cnn.logit_model(xt) * tf.one_hot(t, 5), axis=1)
    manual = (tape.gradient(z, xt) * xt).numpy()
    np.testing.assert_allclose(rel, manual, rtol=1e-3, atol=1e-3 * np.abs(manual).max())


@needs_worker
def test_one_persistent_worker_and_predicted_targets(cnn):
    x, t = _positive_targets(cnn, images(6))  # deep Taylor is 0 for a negative logit
    pid = inv.worker_for(cnn).pid
    for name in ("lrp.z_plus", "lrp.alpha_1_beta_0", "lrp.sequential_preset_a", "deep_taylor",
                 "integrated_gradients"):
        rel = inv.analyze(cnn, name, x, t)
        assert rel.shape == x.shape and np.isfinite(rel).all() and np.abs(rel).sum() > 0, name
    assert (inv.analyze(cnn, "lrp.z_plus", x, t) >= 0).all()  # positive logits: z+ ≥ 0
    # targets=None explains the predicted class
    np.testing.assert_array_equal(inv.analyze(cnn, "lrp.epsilon", x),
                                  inv.analyze(cnn, "lrp.epsilon", x, t))
    assert inv.worker_for(cnn).pid == pid
    assert inv.worker_for(cnn).versions["keras"].startswith("2.")
    assert tf.executing_eagerly()  # the caller stays eager


@needs_worker
def test_worker_error_surfaces_with_traceback(cnn):
    worker = inv.worker_for(cnn)
    with pytest.raises(inv.InnvestigateWorkerError, match="worker traceback") as info:
        worker.analyze("no_such_analyzer", {}, images(1), [0])
    assert "no_such_analyzer" in info.value.worker_traceback
    assert worker.alive  # a failed request leaves the worker usable


@needs_worker
def test_killed_worker_is_reported_not_hung(cnn):
    inv.analyze(cnn, "lrp.epsilon", images(1), [0])
    worker = inv.worker_for(cnn)
    os.kill(worker.pid, signal.SIGKILL)
    t0 = time.monotonic()
    with pytest.raises(inv.InnvestigateWorkerError, match="died.*SIGKILL|gone"):
        worker.analyze("lrp.epsilon", {}, images(1), [0])
    assert time.monotonic() - t0 < 10
    assert not worker.alive
    # the next call starts a fresh worker
    rel = inv.analyze(cnn, "lrp.epsilon", images(1), [0])
    assert np.isfinite(rel).all() and inv.worker_for(cnn).pid != worker.pid


@needs_worker
def test_stuck_worker_times_out_and_is_stopped(cnn):
    worker = inv.worker_for(cnn)
    t0 = time.monotonic()
    with pytest.raises(inv.InnvestigateWorkerError, match="did not answer within"):
        inv.analyze(cnn, "lrp.alpha_2_beta_1", images(8), np.zeros(8, int), timeout=0.05)
    assert time.monotonic() - t0 < 15
    assert not worker.alive and worker._proc.poll() is not None


@needs_worker
def test_unloadable_model_file_is_reported(tmp_path):
    bad = tmp_path / "broken.h5"
    bad.write_bytes(b"this is not an HDF5 file")
    with pytest.raises(inv.InnvestigateWorkerError, match="loading the model") as info:
        inv.InnvestigateWorker(bad, start_timeout=120)
    assert "Traceback" in info.value.worker_traceback


@needs_worker
def test_every_backbone_layer_kind_is_rebuilt_exactly():
    """zoo_cnn (batch norm, depthwise conv, ReLU6, swish, squeeze-excite Multiply, Add,
    Concatenate, zero padding, global pooling, dropout, Normalization, a stripped softmax head):
    the rebuilt Keras 2 model has the same gradients; LRP refusals name the layer."""
    bb = backbone(zoo_cnn(), output="probabilities")
    x, t = images(2, seed=3), np.array([1, 3])
    try:
        rel = inv.analyze(bb, "gradient", x, t)
        assert inv.worker_for(bb).info["probe_max_abs_diff"] < 1e-5
        xt = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(xt)
            z = tf.reduce_sum(bb.logit_model(xt) * tf.one_hot(t, 5), axis=1)
        grad = tape.gradient(z, xt).numpy()
        np.testing.assert_allclose(rel, grad, rtol=1e-4, atol=1e-6 * np.abs(grad).max())
        with pytest.raises(inv.InnvestigateWorkerError, match=r"depthwise_conv2d\S* \(DepthwiseConv2D\)"):
            inv.analyze(bb, "lrp.epsilon", x, t)
    finally:
        inv.close_worker(bb)


@needs_worker
def test_nested_vgg16_architecture():
    """The transfer-learning shape on VGG16's layers (random weights, 32×32, caffe
    preprocessing): rebuilt exactly, and LRP-ε conserves the logit."""
    keras.utils.set_random_seed(0)
    base = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    model = keras.Sequential([base, L.Flatten(), L.Dropout(0.1), L.Dense(4)], name="vgg_tl")
    bb = tfxai.load_model(model, output="logits", preprocess="vgg16")
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    t = np.array([0, 3])
    try:
        rel = inv.analyze(bb, "lrp.epsilon", x, t)
        assert inv.worker_for(bb).info["probe_max_abs_diff"] < 1e-4
        logits = bb.predict_logits(x)[np.arange(2), t]
        np.testing.assert_allclose(rel.reshape(2, -1).sum(1), logits, rtol=1e-3)
        assert list(inv.channel_map(bb)) == [2, 1, 0]  # caffe: RGB → BGR
    finally:
        inv.close_worker(bb)
