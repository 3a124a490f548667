"""LRP through the innvestigate worker: conservation, channel mapping, crashes and errors.

One worker process is started per backbone (≈ 5 s for TensorFlow to import in graph mode), so the
tests share module-scoped backbones.
"""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest
import tensorflow as tf

import tfxai
from tfxai.attribution.lrp import (
    InnvestigateWorker,
    InnvestigateWorkerError,
    channel_map,
    worker_for,
)

S = 4  # 4×4×3 images: 48 inputs


def _dense_relu() -> tf.keras.Model:
    """Flatten → Dense(32, ReLU) → Dense(16, ReLU) → Dense(5): a small dense ReLU network.

    Biases are zero: LRP-ε distributes relevance only to the inputs of each neuron, so a bias
    term keeps its share b_j/z_j of R_j and ε absorbs ε/(z_j+ε); with no biases and ε = 1e-7 the
    relevance at the input sums to the logit, which is what the conservation test checks.
    """
    tf.keras.utils.set_random_seed(4)
    inp = tf.keras.Input((S, S, 3))
    x = tf.keras.layers.Flatten(name="flat")(inp)
    def init(i):
        return tf.keras.initializers.RandomNormal(0.0, 0.3, seed=i)

    x = tf.keras.layers.Dense(32, activation="relu", kernel_initializer=init(1))(x)
    x = tf.keras.layers.Dense(16, activation="relu", kernel_initializer=init(2))(x)
    out = tf.keras.layers.Dense(5, kernel_initializer=init(3))(x)
    return tf.keras.Model(inp, out)


@pytest.fixture(scope="module")
def bb():
    # caffe-like preprocessing (RGB → BGR, mean shift) exercises the channel mapping
    def pre(v):
        v = tf.convert_to_tensor(v, tf.float32)
        return v[..., ::-1] / 255.0 - tf.constant([0.4, 0.5, 0.6])

    backbone = tfxai.load_model(_dense_relu(), output="logits", preprocess=pre,
                                last_conv_layer="flat")
    yield backbone
    worker = worker_for(backbone)
    worker.close()


def _images(n=3, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, S, S, 3)).astype(np.float32)


def test_lrp_epsilon_conserves_logit(bb):
    images = _images()
    targets = np.array([0, 3, 4])
    raw = tfxai.get_attributer("lrp_epsilon", bb).attribute(images, targets)
    assert raw.shape == (3, S, S, 3)
    logits = bb.predict_logits(images)[np.arange(3), targets]
    assert np.abs(logits).min() > 0.05  # a meaningful logit to conserve
    np.testing.assert_allclose(raw.reshape(3, -1).sum(1), logits, rtol=0.05)


def test_channels_mapped_back_to_rgb(bb):
    """With a BGR preprocessing, the relevance of input channel c is that of preprocessed 2 − c:
    check against LRP-ε computed by hand (ε → 0, no bias: R = x_pre · ∂z/∂x_pre per path)."""
    assert list(channel_map(bb)) == [2, 1, 0]
    images, t = _images(1, 1), 2
    raw = tfxai.get_attributer("lrp_epsilon", bb).attribute(images, [t])[0]
    xp = tf.constant(bb.preprocess(images))
    with tf.GradientTape() as tape:
        tape.watch(xp)
        z = bb.logit_model(xp)[:, t]
    # for a bias-free ReLU network LRP-0 equals gradient × input
    manual = (tape.gradient(z, xp) * xp).numpy()[0][..., ::-1]
    np.testing.assert_allclose(raw, manual, rtol=1e-3, atol=1e-5)


def test_other_rules_run_in_the_same_worker(bb):
    images = _images(2, 2)
    pid = worker_for(bb).pid
    for name in ["lrp_z_plus", "lrp_alpha_beta", "lrp_sequential_preset_a", "deep_taylor"]:
        raw = tfxai.get_attributer(name, bb).attribute(images, [1, 2])
        assert raw.shape == (2, S, S, 3) and np.isfinite(raw).all(), name
        assert np.abs(raw).sum() > 0, name
    assert worker_for(bb).pid == pid  # one persistent worker per backbone
    # the main process stays eager
    assert tf.executing_eagerly()


def test_worker_error_surfaces_with_traceback(bb):
    worker = worker_for(bb)
    with pytest.raises(InnvestigateWorkerError, match="worker traceback") as info:
        worker.analyze("no_such_analyzer", {}, _images(1), [0])
    assert "no_such_analyzer" in info.value.worker_traceback
    assert worker.alive  # a failed request leaves the worker usable


def test_killed_worker_is_reported_not_hung(bb):
    att = tfxai.get_attributer("lrp_epsilon", bb, timeout=60)
    att.attribute(_images(1), [0])
    worker = worker_for(bb)
    os.kill(worker.pid, signal.SIGKILL)
    t0 = time.monotonic()
    with pytest.raises(InnvestigateWorkerError, match="died|gone"):
        worker.analyze("lrp.epsilon", {}, np.zeros((1, S, S, 3), np.float32), [0])
    assert time.monotonic() - t0 < 10
    assert not worker.alive
    # the next call starts a fresh worker
    raw = att.attribute(_images(1), [0])
    assert np.isfinite(raw).all() and worker_for(bb).pid != worker.pid


def test_unloadable_model_file_is_reported(tmp_path):
    bad = tmp_path / "broken.h5"
    bad.write_bytes(b"this is not an HDF5 file")
    with pytest.raises(InnvestigateWorkerError, match="loading the model") as info:
        InnvestigateWorker(bad, start_timeout=120)
    assert "Traceback" in info.value.worker_traceback


def test_unsupported_layer_is_named():
    """innvestigate refuses some layers with a bare NotImplementedError: the message says which."""
    inp = tf.keras.Input((S, S, 3))
    x = tf.keras.layers.Rescaling(1 / 255.0)(inp)
    out = tf.keras.layers.Dense(2)(tf.keras.layers.Flatten()(x))
    worker = InnvestigateWorker.from_model(tf.keras.Model(inp, out), start_timeout=120)
    try:
        with pytest.raises(InnvestigateWorkerError, match="Rescaling"):
            worker.analyze("lrp.epsilon", {}, _images(1), [0])
    finally:
        worker.close()
    assert not worker.alive
