"""Tests of the Attributer contract (tfxai.attribution.base), to_map post-processing, and the first
two methods: saliency against a hand-written GradientTape gradient, Grad-CAM against tf-keras-vis.

Tiny CNNs (32×32 input, a few conv layers) do most of the work; one random-weight VGG16 checks the
same agreements on a real backbone with one image.
"""

from __future__ import annotations

import warnings
from typing import ClassVar

import numpy as np
import pytest
import tensorflow as tf

import tfxai
from tfxai.attribution.base import (
    MAP_REDUCE,
    MAP_SCALE,
    Attributer,
    Param,
    canonical_params,
    to_map,
    validate_params,
)
from tfxai.attribution.registry import get_attributer, list_methods, method_info
from tfxai.backend import keras
from tfxai.models import RandomWeightsWarning

SIZE = 32
CLASSES = 6


# --------------------------------------------------------------------------------------- fixtures


def _tiny_cnn(seed: int, pool: bool) -> keras.Model:
    """conv → (pool) → conv → relu → GAP → Dense(softmax); the Grad-CAM layer is ``conv2_relu``."""
    keras.utils.set_random_seed(seed)
    L = keras.layers
    inp = keras.Input((SIZE, SIZE, 3))
    h = L.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(inp)
    if pool:
        h = L.MaxPooling2D(2, name="pool1")(h)
    h = L.Conv2D(12, 3, padding="same", name="conv2")(h)
    h = L.Activation("relu", name="conv2_relu")(h)
    h = L.GlobalAveragePooling2D(name="gap")(h)
    dense = L.Dense(CLASSES, activation="softmax", name="predictions")
    model = keras.Model(inp, dense(h), name=f"tiny_{'pool' if pool else 'flat'}")
    # a wider classifier than Glorot's, so that different images get different predicted classes
    kernel = np.random.default_rng(seed).normal(0.0, 1.0, dense.kernel.shape)
    dense.set_weights([kernel.astype(np.float32), np.zeros(CLASSES, np.float32)])
    return model


def _scale(x):
    """Custom preprocessing of the tiny models: 0..255 → [-1, 1]."""
    return tf.convert_to_tensor(x, tf.float32) / 127.5 - 1.0


@pytest.fixture(scope="module")
def tiny():
    """Tiny CNN with a 2× pooling: Grad-CAM layer at 16×16."""
    return tfxai.load_model(_tiny_cnn(1, pool=True), preprocess=_scale)


@pytest.fixture(scope="module")
def tiny_flat():
    """Tiny CNN without pooling: Grad-CAM layer at the input resolution (no upsampling)."""
    return tfxai.load_model(_tiny_cnn(2, pool=False), preprocess=_scale)


@pytest.fixture(scope="module")
def images():
    """Five noisy solid colours (red, green, blue, white, black)."""
    colours = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255], [0, 0, 0]])
    noise = np.random.default_rng(0).normal(0, 40, (5, SIZE, SIZE, 3))
    return np.clip(colours[:, None, None, :] + noise, 0, 255).astype(np.float32)


@pytest.fixture(scope="module")
def vgg16():
    with pytest.warns(RandomWeightsWarning):
        return tfxai.load_model("vgg16", weights="none", seed=0)


@pytest.fixture(scope="module")
def vgg_image():
    return np.random.default_rng(1).uniform(0, 255, (1, 224, 224, 3)).astype(np.float32)


def _corr(a, b) -> float:
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


# --------------------------------------------------------------------------------------- to_map


def test_to_map_channel_reductions():
    raw = np.zeros((1, 1, 2, 3), np.float32)
    raw[0, 0, 0] = [1.0, -2.0, 2.0]
    raw[0, 0, 1] = [-3.0, 0.0, 4.0]
    got = {r: to_map(raw, reduce=r, scale="none")[0, 0] for r in MAP_REDUCE}
    np.testing.assert_allclose(got["sum"], [1.0, 1.0])
    np.testing.assert_allclose(got["mean"], [1 / 3, 1 / 3], rtol=1e-6)
    np.testing.assert_allclose(got["max_abs"], [2.0, 4.0])
    np.testing.assert_allclose(got["l2"], [3.0, 5.0])
    for m in got.values():
        assert m.dtype == np.float32


def test_to_map_absolute_and_scales():
    raw = np.array([[[-4.0, 2.0], [1.0, 0.0]], [[10.0, 20.0], [30.0, 40.0]]], np.float32)
    m = to_map(raw, scale="max")
    np.testing.assert_allclose(m[0], [[-1.0, 0.5], [0.25, 0.0]])  # signed: divided by max |m|
    np.testing.assert_allclose(m[1], [[0.25, 0.5], [0.75, 1.0]])  # per image
    np.testing.assert_allclose(to_map(raw, absolute=True, scale="max")[0], [[1, 0.5], [0.25, 0]])
    mm = to_map(raw, scale="minmax")
    np.testing.assert_allclose(mm[0], [[0.0, 1.0], [5 / 6, 4 / 6]], rtol=1e-6)
    np.testing.assert_allclose(mm[1], [[0, 1 / 3], [2 / 3, 1]], rtol=1e-6)
    np.testing.assert_array_equal(to_map(raw, scale="none"), raw)
    assert to_map(raw.astype(np.float64)).dtype == np.float32


def test_to_map_sigma_threshold_gattas():
    """Values whose |map| is below k·σ(|map|) (per image) become 0, the rest are unchanged."""
    rng = np.random.default_rng(3)
    raw = rng.normal(size=(2, 8, 8)).astype(np.float32)
    raw[1] *= 100.0  # the threshold is per image
    for k in (0.5, 1.0):
        m = to_map(raw, scale="none", threshold="sigma", k=k)
        for i in range(2):
            a = np.abs(raw[i])
            t = k * a.std()
            expected = np.where(a < t, 0.0, raw[i])
            np.testing.assert_allclose(m[i], expected, rtol=1e-6)
            assert 0 < (m[i] == 0).sum() < 64
    # hand-computed: |map| = [0, 0, 0, 4] → σ = √3 ≈ 1.73; k=0.5 keeps only the 4 (and the sign)
    m = to_map(np.array([[[0.0, 0.0], [0.0, -4.0]]]), scale="none", threshold="sigma", k=0.5)
    np.testing.assert_array_equal(m, [[[0, 0], [0, -4]]])
    m = to_map(np.array([[[1.0, -1.0], [0.5, 2.0]]]), scale="max", threshold="sigma", k=1.0)
    # scaled: [0.5, -0.5, 0.25, 1]; |.| std = 0.2707 → all but 0.25 kept
    np.testing.assert_allclose(m, [[[0.5, -0.5], [0.0, 1.0]]])


def test_to_map_percentile_threshold():
    rng = np.random.default_rng(4)
    # |map| is a permutation of 1..100 with random signs: the 80th percentile is 80.2
    raw = (rng.permutation(100) + 1.0) * rng.choice([-1.0, 1.0], 100)
    raw = raw.reshape(1, 10, 10).astype(np.float32)
    m = to_map(raw, scale="none", threshold="percentile", percentile=80)
    np.testing.assert_array_equal(m, np.where(np.abs(raw) <= 80, 0, raw))
    assert (m != 0).sum() == 20  # the top 20% of |map| survive, with their signs
    np.testing.assert_array_equal(to_map(raw, scale="none", threshold="percentile", percentile=0),
                                  raw)


@pytest.mark.parametrize("scale", MAP_SCALE)
@pytest.mark.parametrize("threshold", [None, "sigma", "percentile"])
@pytest.mark.parametrize("reduce", MAP_REDUCE)
def test_to_map_zero_and_constant_maps_stay_finite_without_warnings(scale, threshold, reduce):
    raw = np.zeros((3, 6, 5, 3), np.float32)
    raw[1] = 2.5  # constant
    raw[2] = -7.0  # constant negative
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = to_map(raw, reduce=reduce, scale=scale, threshold=threshold)
    assert m.shape == (3, 6, 5)
    assert np.isfinite(m).all()
    np.testing.assert_array_equal(m[0], 0)
    if scale == "minmax":
        np.testing.assert_array_equal(m, 0)  # a constant map carries no ranking
    if scale == "max" and threshold is None:
        np.testing.assert_allclose(np.abs(m[1]), 1.0)


def test_to_map_leaves_non_finite_values_for_metrics_to_report():
    raw = np.ones((2, 4, 4), np.float32)
    raw[0, 1, 1] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = to_map(raw, threshold="sigma")
    assert np.isnan(m[0, 1, 1])
    np.testing.assert_array_equal(m[1], 1.0)


def test_to_map_input_shape_and_option_errors():
    with pytest.raises(ValueError, match="shape"):
        to_map(np.zeros((4, 4)))
    with pytest.raises(ValueError, match="scale"):
        to_map(np.zeros((1, 4, 4)), scale="unit")
    with pytest.raises(ValueError, match="reduce"):
        to_map(np.zeros((1, 4, 4, 3)), reduce="median")
    with pytest.raises(ValueError, match="threshold"):
        to_map(np.zeros((1, 4, 4)), threshold="otsu")
    np.testing.assert_array_equal(to_map(np.ones((1, 2, 2))), 1.0)  # (N, H, W) accepted


def test_to_map_rejects_unknown_reduce_for_single_channel_maps():
    with pytest.raises(ValueError, match="reduce"):
        to_map(np.zeros((1, 4, 4)), reduce="median")


# --------------------------------------------------------------------------------------- parameters


class _Probe(Attributer):
    """A stochastic test method (not registered): noise from the per-image seed plus the image."""

    name = "probe"
    stochastic = True
    params_spec: ClassVar[dict[str, Param]] = {
        "sigma": Param(0.1, float, "noise scale", check=lambda v: v > 0, check_doc="must be > 0"),
        "mode": Param("a", str, "a choice", choices=("a", "b")),
        "steps": Param(4, int, "an int"),
    }

    def _attribute(self, x, targets, seeds):
        self.calls.append((len(seeds), np.asarray(seeds).tolist()))
        h, w = self.backbone.input_size
        noise = np.stack([np.random.default_rng([int(s), 7]).normal(size=(h, w)) for s in seeds])
        return noise * self.params["sigma"] + x.numpy().mean(axis=-1) + targets.numpy()[:, None, None]

    def _setup(self):
        self.calls = []


def test_unknown_parameter_names_it_and_lists_known(tiny):
    with pytest.raises(ValueError) as info:
        get_attributer("saliency", tiny, stpes=3)
    msg = str(info.value)
    assert "saliency" in msg and "'stpes'" in msg and "batch_size" in msg
    with pytest.raises(ValueError) as info:
        _Probe(tiny, sigam=1.0)
    assert "sigam" in str(info.value)
    for known in ("batch_size", "mode", "seed", "sigma", "steps"):
        assert known in str(info.value)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"sigma": "0.5"}, "'sigma' must be float"),
        ({"sigma": -1.0}, "'sigma' must be > 0"),
        ({"sigma": True}, "'sigma' must be float"),
        ({"mode": "c"}, r"'mode' must be one of \['a', 'b'\]"),
        ({"steps": 2.5}, "'steps' must be int"),
        ({"steps": True}, "'steps' must be int"),
        ({"batch_size": 0}, "'batch_size' must be > 0"),
        ({"seed": "x"}, "'seed' must be int"),
    ],
)
def test_bad_parameter_values(tiny, params, match):
    with pytest.raises(ValueError, match=match):
        _Probe(tiny, **params)


def test_int_accepted_for_float_and_numpy_scalars(tiny):
    p = _Probe(tiny, sigma=2, steps=np.int64(3))
    assert p.params["sigma"] == 2.0 and type(p.params["sigma"]) is float
    assert p.params["steps"] == 3 and type(p.params["steps"]) is int
    assert _Probe(tiny, sigma=np.float32(0.5)).params["sigma"] == 0.5


def test_gradcam_layer_parameter_validation(tiny):
    with pytest.raises(ValueError, match="'layer' must be str"):
        get_attributer("gradcam", tiny, layer=3)
    with pytest.raises(ValueError, match="nope"):
        get_attributer("gradcam", tiny, layer="nope")
    with pytest.raises(ValueError, match="4-D"):
        get_attributer("gradcam", tiny, layer="gap")


def test_get_attributer_unknown_method_and_tunnel(tiny):
    with pytest.raises(ValueError, match="unknown method 'salincy'") as info:
        get_attributer("salincy", tiny)
    assert "gradcam" in str(info.value) and "saliency" in str(info.value)
    with pytest.raises(ValueError, match="unknown noise tunnel 'bogus'"):
        get_attributer("saliency+bogus", tiny)
    assert {"saliency", "gradcam"} <= set(list_methods())
    info_names = {row["name"] for row in method_info()}
    assert {"saliency", "gradcam"} <= info_names


def test_method_params_json_is_canonical(tiny):
    a = _Probe(tiny, steps=4, mode="b", sigma=1, batch_size=3)
    b = _Probe(tiny, sigma=1.0, mode="b")
    assert a.method_params_json() == b.method_params_json()
    assert a.method_params_json() == '{"mode":"b","seed":0,"sigma":1.0,"steps":4}'
    assert "batch_size" not in a.method_params()  # execution-only, not recorded
    assert canonical_params({"b": np.float32(0.5), "a": np.int64(2)}) == '{"a":2,"b":0.5}'
    # Grad-CAM records the layer actually used, whether given or defaulted
    assert get_attributer("gradcam", tiny).method_params_json() == '{"layer":"conv2_relu"}'
    assert (get_attributer("gradcam", tiny, layer="conv2_relu").method_params_json()
            == get_attributer("gradcam", tiny).method_params_json())
    assert get_attributer("saliency", tiny).method_params_json() == "{}"


def test_validate_params_directly():
    spec = {"k": Param(0.5, float), "name": Param(None, str, nullable=True)}
    assert validate_params("m", spec, {}) == {"k": 0.5, "name": None}
    assert validate_params("m", spec, {"k": 1, "name": "x"}) == {"k": 1.0, "name": "x"}
    with pytest.raises(ValueError, match=r"m: unknown parameter\(s\) \['z'\]; known parameters: k, name"):
        validate_params("m", spec, {"z": 1})


# --------------------------------------------------------------------------------------- seeds, targets


def test_per_image_seeds_make_results_independent_of_batching(tiny, images):
    seeds = np.array([101, 5, 77, 3, 42])
    t = np.array([0, 1, 2, 3, 4])
    one = _Probe(tiny, batch_size=5)
    whole = one.attribute(images, t, seeds)
    assert one.calls == [(5, seeds.tolist())]
    chunked = _Probe(tiny, batch_size=2)
    np.testing.assert_array_equal(chunked.attribute(images, t, seeds), whole)
    assert chunked.calls == [(2, [101, 5]), (2, [77, 3]), (1, [42])]
    # an image keeps its result whatever its position and companions
    perm = np.array([3, 0, 4, 1, 2])
    np.testing.assert_array_equal(_Probe(tiny).attribute(images[perm], t[perm], seeds[perm]),
                                  whole[perm])
    np.testing.assert_array_equal(_Probe(tiny).attribute(images[2:3], t[2:3], seeds[2:3]),
                                  whole[2:3])
    # the base seed offsets every per-image seed; default seeds are seed + arange(N)
    shifted = _Probe(tiny, seed=10)
    np.testing.assert_array_equal(shifted.attribute(images, t, seeds - 10), whole)
    default = _Probe(tiny, seed=10)
    default.attribute(images, t)
    assert default.calls[0][1] == [10, 11, 12, 13, 14]
    assert not np.array_equal(_Probe(tiny).attribute(images, t, seeds + 1), whole)
    with pytest.raises(ValueError, match="seeds"):
        _Probe(tiny).attribute(images, t, seeds[:3])


def test_targets_validation(tiny, images):
    sal = get_attributer("saliency", tiny)
    with pytest.raises(ValueError, match="targets"):
        sal.attribute(images, [0, 1])
    with pytest.raises(ValueError, match=r"0\.\.5"):
        sal.attribute(images, [0, 1, 2, 3, CLASSES])
    with pytest.raises(ValueError, match=r"0\.\.5"):
        sal.attribute(images, [0, 1, -1, 3, 4])
    with pytest.raises(ValueError, match="expected images of shape"):
        sal.attribute(images[:, :16])
    assert sal.attribute(images[:0]).shape == (0, SIZE, SIZE, 3)


# --------------------------------------------------------------------------------------- saliency


def _reference_logits_model(keras_model: keras.Model):
    """Logits written by hand: penultimate features @ W + b of the softmax Dense layer."""
    dense = keras_model.layers[-1]
    features = keras.Model(keras_model.inputs, dense.input)
    kernel, bias = dense.kernel, dense.bias

    def logits(x):
        return tf.matmul(features(x, training=False), kernel) + bias

    return logits


def _tape_gradient(logits_fn, preprocess, x, targets):
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        z = logits_fn(preprocess(x))
        score = tf.reduce_sum(z * tf.one_hot(targets, z.shape[-1]))
    return tape.gradient(score, x).numpy()


def test_saliency_equals_gradienttape_gradient_tiny(tiny, images):
    targets = np.array([0, 3, 5, 1, 2])
    raw = get_attributer("saliency", tiny, batch_size=2).attribute(images, targets)
    assert raw.shape == images.shape and raw.dtype == np.float32
    ref = _tape_gradient(_reference_logits_model(tiny.keras_model),
                         lambda x: x / 127.5 - 1.0, images, targets)
    assert np.abs(ref).max() > 0
    np.testing.assert_allclose(raw, ref, rtol=1e-4, atol=1e-6 * np.abs(ref).max())
    # a different class gives a different gradient (the target is honoured)
    other = get_attributer("saliency", tiny).attribute(images, (targets + 1) % CLASSES)
    assert not np.allclose(other, raw)


def test_saliency_default_map_is_max_abs_over_channels(tiny, images):
    sal = get_attributer("saliency", tiny)
    raw = sal.attribute(images, np.zeros(5, int))
    expected = np.abs(raw).max(axis=-1)
    expected /= expected.max(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(sal.to_map(raw), expected, rtol=1e-6)


def test_targets_none_uses_predicted_class(tiny, images):
    predicted = tiny.predict(images).argmax(axis=1)
    assert len(set(predicted.tolist())) > 1  # so a wrong default target would show
    for name in ("saliency", "gradcam"):
        att = get_attributer(name, tiny)
        np.testing.assert_array_equal(att.attribute(images), att.attribute(images, predicted))


def test_saliency_equals_gradienttape_gradient_vgg16(vgg16, vgg_image):
    t = np.array([int(vgg16.predict(vgg_image).argmax())])
    raw = get_attributer("saliency", vgg16).attribute(vgg_image, t)

    def caffe(x):  # VGG16 preprocessing written out: RGB → BGR, minus the ImageNet means
        return x[..., ::-1] - tf.constant([103.939, 116.779, 123.68])

    ref = _tape_gradient(_reference_logits_model(vgg16.keras_model), caffe, vgg_image, t)
    assert np.abs(ref).max() > 0
    np.testing.assert_allclose(raw, ref, rtol=1e-3, atol=1e-5 * np.abs(ref).max())


# --------------------------------------------------------------------------------------- Grad-CAM


def _tfkv_gradcam(keras_model, x_pre, targets, layer, expand):
    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
    from tf_keras_vis.utils.scores import CategoricalScore

    cam = Gradcam(keras_model, model_modifier=ReplaceToLinear(), clone=True)
    return np.asarray(
        cam(CategoricalScore(list(map(int, targets))), x_pre, penultimate_layer=layer,
            seek_penultimate_conv_layer=False, expand_cam=expand, normalize_cam=False)
    )


def _layer_resolution(att, images, targets) -> np.ndarray:
    """The attributer's own Grad-CAM map before upsampling (``layer_map``)."""
    t = tf.constant(np.asarray(targets), tf.int32)
    return att.layer_map(tf.constant(images), t).numpy()


def test_gradcam_equals_tf_keras_vis_at_input_resolution(tiny_flat, images):
    """No pooling: the layer is at input resolution, so both maps must match exactly."""
    t = np.array([0, 1, 2, 3, 4])
    ours = get_attributer("gradcam", tiny_flat).attribute(images, t)
    ref = _tfkv_gradcam(tiny_flat.keras_model, tiny_flat.preprocess(images).numpy(), t,
                        "conv2_relu", expand=False)
    assert ours.shape == ref.shape == (5, SIZE, SIZE)
    assert (ref > 0).any()
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-6 * ref.max())


def _align_corners(maps, size):
    """Bilinear upsampling with corner alignment: what scipy.ndimage.zoom(order=1) computes."""
    up = tf.compat.v1.image.resize_bilinear(maps[..., None], size, align_corners=True)
    return up[..., 0].numpy()


def _half_pixel(maps, size):
    """Bilinear upsampling with half-pixel centres (tf.image.resize): tfxai's recorded choice."""
    return tf.image.resize(maps[..., None], size, "bilinear")[..., 0].numpy()


def _check_against_tf_keras_vis(ours, ours_layer, ref_layer, ref_up):
    size = ours.shape[1:]
    tol = 1e-5 * ref_layer.max()
    for i in range(len(ours)):
        assert ref_layer[i].std() > 0
        # layer resolution: the same map
        assert _corr(ours_layer[i], ref_layer[i]) > 0.99
        # upsampled, with the same bilinear convention: the same map
        assert _corr(ours[i], _half_pixel(ref_layer, size)[i]) > 0.99
    np.testing.assert_allclose(ours_layer, ref_layer, rtol=1e-3, atol=tol)
    np.testing.assert_allclose(ours, _half_pixel(ref_layer, size), rtol=1e-3, atol=tol)
    # tf-keras-vis' own expand_cam is scipy zoom, i.e. corner-aligned bilinear; resampling our
    # layer map that way reproduces it exactly, so the only difference is the alignment convention
    np.testing.assert_allclose(_align_corners(ours_layer, size), ref_up, rtol=1e-3, atol=tol)


def test_gradcam_agrees_with_tf_keras_vis_small_cnn(tiny, images):
    t = tiny.predict(images).argmax(axis=1)  # Grad-CAM of a non-predicted class may be all 0
    x_pre = tiny.preprocess(images).numpy()
    ref_layer = _tfkv_gradcam(tiny.keras_model, x_pre, t, "conv2_relu", expand=False)
    ref_up = _tfkv_gradcam(tiny.keras_model, x_pre, t, "conv2_relu", expand=True)
    assert ref_layer.shape == (5, 16, 16) and ref_up.shape == (5, SIZE, SIZE)
    ours = get_attributer("gradcam", tiny, batch_size=2).attribute(images, t)
    assert ours.shape == (5, SIZE, SIZE) and ours.dtype == np.float32 and (ours >= 0).all()
    ours_layer = _layer_resolution(get_attributer("gradcam", tiny), images, t)
    _check_against_tf_keras_vis(ours, ours_layer, ref_layer, ref_up)


def test_gradcam_does_not_retrace_per_batch(tiny, images):
    att = get_attributer("gradcam", tiny, batch_size=3)
    att.attribute(images, np.zeros(5, int))  # chunks of 3 and 2
    att.attribute(images[:1], np.zeros(1, int))
    assert att._fn.experimental_get_tracing_count() == 1


def test_gradcam_agrees_with_tf_keras_vis_vgg16(vgg16, vgg_image):
    layer = vgg16.last_conv_layer
    assert layer == "block5_conv3"
    t = vgg16.predict(vgg_image).argmax(axis=1)
    x_pre = vgg16.preprocess(vgg_image).numpy()
    ref_layer = _tfkv_gradcam(vgg16.keras_model, x_pre, t, layer, expand=False)
    ref_up = _align_corners(ref_layer, (224, 224))  # = tf-keras-vis expand_cam (checked above)
    ours = get_attributer("gradcam", vgg16).attribute(vgg_image)  # predicted class
    ours_layer = _layer_resolution(get_attributer("gradcam", vgg16), vgg_image, t)
    assert ref_layer.shape == ours_layer.shape == (1, 14, 14)
    assert ours.shape == (1, 224, 224)
    _check_against_tf_keras_vis(ours, ours_layer, ref_layer, ref_up)


def test_attributions_run_the_model_in_inference_mode(images):
    """Dropout and batch norm must act as at inference: repeated calls give identical maps."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((SIZE, SIZE, 3))
    h = keras.layers.Conv2D(6, 3, padding="same", name="conv")(inp)
    h = keras.layers.BatchNormalization(name="bn")(h)
    h = keras.layers.Activation("relu", name="act")(h)
    h = keras.layers.Dropout(0.5, name="drop")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    model = keras.Model(inp, keras.layers.Dense(CLASSES, activation="softmax")(h))
    bb = tfxai.load_model(model, preprocess=_scale, last_conv_layer="act")
    for name in ("saliency", "gradcam"):
        att = get_attributer(name, bb)
        first = att.attribute(images, np.zeros(5, int))
        np.testing.assert_array_equal(att.attribute(images, np.zeros(5, int)), first)


def test_negative_seed_is_rejected_at_construction(tiny):
    with pytest.raises(ValueError, match="'seed'"):
        _Probe(tiny, seed=-1)
