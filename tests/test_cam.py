"""Grad-CAM family: tf-keras-vis Gradcam/GradcamPlusPlus, guided Grad-CAM, the layer option."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from _tiny_models import backbone, corr, images, zoo_cnn

import tfxai
from tfxai.backend import keras

tkv = pytest.importorskip("tf_keras_vis")
from tf_keras_vis.gradcam import Gradcam  # noqa: E402
from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus  # noqa: E402
from tf_keras_vis.utils.model_modifiers import ReplaceToLinear  # noqa: E402
from tf_keras_vis.utils.scores import CategoricalScore  # noqa: E402


@pytest.fixture(scope="module")
def setup():
    bb = backbone(zoo_cnn(size=32), output="probabilities")
    x = images(3, size=32)
    t = np.array([0, 1, 2])
    return bb, x, t


def _tkv(cls, bb, x, t, layer, expand):
    """tf-keras-vis on a model built anew with the same weights (it reaches layers through
    ``layer.output``, the tensor of the layer's first graph) with its softmax made linear."""
    model = zoo_cnn(size=32)
    for a, b in zip(model.weights, bb.keras_model.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    viz = cls(model, model_modifier=ReplaceToLinear(), clone=False)
    layer = model.layers[[lay.name for lay in bb.keras_model.layers].index(layer)].name
    out = viz(CategoricalScore(list(t)), x, penultimate_layer=layer,
              seek_penultimate_conv_layer=False, normalize_cam=False, expand_cam=expand)
    return np.asarray(out)


@pytest.mark.parametrize("method,cls", [("gradcam", Gradcam), ("gradcam_pp", GradcamPlusPlus)])
@pytest.mark.parametrize("layer", [None, "merge"])
def test_agrees_with_tf_keras_vis(setup, method, cls, layer):
    bb, x, t = setup
    att = tfxai.get_attributer(method, bb, layer=layer)
    name = layer or bb.last_conv_layer
    assert att.params["layer"] == name
    ours = att.layer_map(tf.constant(x), tf.constant(t, tf.int32)).numpy()
    ref = _tkv(cls, bb, x, t, name, expand=False)
    assert ours.shape == ref.shape
    for i in range(len(x)):
        assert corr(ours[i], ref[i]) > 0.999
    if method == "gradcam_pp":
        # tf-keras-vis keeps the paper's exp(S) factor, a positive per-image scale
        scale = np.exp(bb.predict_logits(x)[np.arange(3), t])
        np.testing.assert_allclose(ref, ours * scale[:, None, None], rtol=1e-3,
                                   atol=1e-6 * ref.max())
    else:
        np.testing.assert_allclose(ref, ours, rtol=1e-3, atol=1e-6 * ref.max())
    # upsampled: bilinear with half-pixel centres vs scipy zoom (corner-aligned)
    up = att.attribute(x, t)
    ref_up = _tkv(cls, bb, x, t, name, expand=True)
    assert up.shape == ref_up.shape == (3, 32, 32)
    for i in range(len(x)):
        assert corr(up[i], ref_up[i]) > 0.9


def test_guided_gradcam_is_product(setup):
    bb, x, t = setup
    gg = tfxai.get_attributer("guided_gradcam", bb, layer="merge")
    cam = tfxai.get_attributer("gradcam", bb, layer="merge").attribute(x, t)
    guided = tfxai.get_attributer("guided_backprop", bb).attribute(x, t)
    out = gg.attribute(x, t)
    assert out.shape == x.shape
    np.testing.assert_allclose(out, cam[..., None] * guided, rtol=1e-4,
                               atol=1e-6 * np.abs(out).max())
    assert gg.method_params() == {"layer": "merge"}


def test_layer_errors(setup):
    bb, _, _ = setup
    for method in ("gradcam", "gradcam_pp", "guided_gradcam"):
        with pytest.raises(ValueError, match="not found"):
            tfxai.get_attributer(method, bb, layer="no_such_layer")
        with pytest.raises(ValueError, match="4-D"):
            tfxai.get_attributer(method, bb, layer="head")


def test_gradcam_pp_closed_form():
    """Last conv → global average pooling → dense: g = w_kc/(hw) is constant over positions,
    so α = 1/(hw) after normalisation and the map is ReLU(Σ_k ReLU(w_kc) A^k)/(hw)."""
    keras.utils.set_random_seed(6)
    L = keras.layers
    inp = L.Input((8, 8, 3))
    a = L.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inp)
    out = L.Dense(3, use_bias=False)(L.GlobalAveragePooling2D()(a))
    model = keras.Model(inp, out)
    bb = backbone(model)
    x = images(2, size=8)
    w = model.layers[-1].get_weights()[0]
    acts = keras.Model(inp, a)(x).numpy()
    att = tfxai.get_attributer("gradcam_pp", bb)
    ours = att.layer_map(tf.constant(x), tf.constant([0, 2], tf.int32)).numpy()
    for i, t in enumerate([0, 2]):
        expect = np.maximum(acts[i] @ (np.maximum(w[:, t], 0) / 64.0), 0)
        np.testing.assert_allclose(ours[i], expect, rtol=1e-4, atol=1e-7)
