"""Tests of tfxai.models: the five Keras backbones with random weights, the weights options (ImageNet
offline, files, seeded random init), unknown names, and custom models (objects and saved files,
preprocessing, input size, last conv layer detection, softmax stripping, ``output="logits"``).

Each heavy backbone is built once (module-scoped, one at a time) and predicts on one image.
"""

from __future__ import annotations

import gc
import importlib
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import tfxai
from tfxai.backend import keras
from tfxai.graph import flatten
from tfxai.models import (
    MODELS,
    ModelLoadError,
    ModelSpec,
    RandomWeightsWarning,
    find_last_conv_layer,
    get_model_spec,
    list_models,
    load_model,
)

L = keras.layers

# name → (keras.applications class, preprocess module, input size, last conv layer, its (h, w))
BACKBONES = {
    "vgg16": ("VGG16", "vgg16", (224, 224), "block5_conv3", (14, 14)),
    "resnet50": ("ResNet50", "resnet50", (224, 224), "conv5_block3_out", (7, 7)),
    "densenet121": ("DenseNet121", "densenet", (224, 224), "relu", (7, 7)),
    "efficientnetb0": ("EfficientNetB0", "efficientnet", (224, 224), "top_activation", (7, 7)),
    "inceptionv3": ("InceptionV3", "inception_v3", (299, 299), "mixed10", (8, 8)),
}


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _dense_logits(model: keras.Model, dense_name: str, x_pre) -> np.ndarray:
    """Logits written by hand: the input features of a Dense layer @ kernel + bias."""
    dense = model.get_layer(dense_name)
    feats = keras.Model(model.inputs, dense.input)(x_pre, training=False)
    return (tf.matmul(feats, dense.kernel) + dense.bias).numpy()


# --------------------------------------------------------------------------------------- backbones


@pytest.fixture(scope="module", params=list(BACKBONES))
def backbone(request):
    """One registered backbone with random weights, built once for the module."""
    with pytest.warns(RandomWeightsWarning, match="mean nothing"):
        bb = load_model(request.param, weights="none", seed=0)
    yield bb
    del bb
    gc.collect()


@pytest.mark.slow
def test_backbone_random_weights_predict_and_logits(backbone):
    name = backbone.name
    cls_name, module, size, last_conv, conv_hw = BACKBONES[name]
    # registry facts
    assert backbone.input_size == size
    assert tuple(backbone.keras_model.input_shape[1:3]) == size
    assert backbone.weights == "none" and backbone.num_classes == 1000
    assert backbone.last_conv_layer == last_conv
    assert tuple(backbone.find_layer(last_conv).shape[1:3]) == conv_hw
    assert find_last_conv_layer(backbone.graph) == last_conv  # detection agrees

    x = np.random.default_rng(0).uniform(0, 255, (1, *size, 3)).astype(np.float32)
    x_copy = x.copy()
    # preprocessing is Keras' own preprocess_input, and does not modify the input in place
    keras_pre = importlib.import_module(f"keras.applications.{module}").preprocess_input
    x_pre = backbone.preprocess(x)
    np.testing.assert_allclose(x_pre.numpy(), keras_pre(x.copy()), rtol=1e-6, atol=1e-4)
    np.testing.assert_array_equal(x, x_copy)

    z = backbone.predict_logits(x)
    p = backbone.predict(x)
    assert z.shape == p.shape == (1, 1000) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(_softmax(z.astype(np.float64)), p, atol=1e-5, rtol=1e-4)
    # one reference forward pass of the Keras model as built: its softmax output, and the
    # features entering its "predictions" layer, from which the logits are written by hand
    km = backbone.keras_model
    dense = km.get_layer("predictions")
    feats, keras_p = keras.Model(km.inputs, [dense.input, km.output])(x_pre, training=False)
    ref = (tf.matmul(feats, dense.kernel) + dense.bias).numpy()
    np.testing.assert_allclose(p, keras_p.numpy(), atol=1e-6, rtol=1e-4)
    np.testing.assert_allclose(z, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    np.testing.assert_array_equal(x, x_copy)
    # the wrapped Keras model keeps its softmax (the logits were checked above)
    assert backbone.keras_model.layers[-1].activation.__name__ == "softmax"


@pytest.mark.parametrize("name", list(BACKBONES))
def test_registry_entries(name):
    spec = get_model_spec(name)
    assert spec.input_size == BACKBONES[name][2]
    assert spec.resolve_last_conv() == BACKBONES[name][3]
    assert name in list_models()
    assert get_model_spec(name.upper()) is spec


# --------------------------------------------------------------------------------------- weights


def _fetch_failure(*args, **kwargs):
    """What Keras' get_file raises offline (keras/src/utils/file_utils.py)."""
    raise Exception(
        "URL fetch failure on https://storage.googleapis.com/tensorflow/keras-applications/x.h5: "
        "None -- [Errno -3] Temporary failure in name resolution"
    )


@pytest.mark.parametrize("name", list(BACKBONES))
def test_imagenet_weights_offline_says_how_to_supply_a_file(monkeypatch, tmp_path, name):
    from tfxai.cli.options import error_text

    monkeypatch.setattr(keras.applications, BACKBONES[name][0], _fetch_failure)
    home = _fake_keras_home(monkeypatch, tmp_path)
    with pytest.raises(ModelLoadError) as info:
        load_model(name, weights="imagenet")
    msg = str(info.value)
    assert name in msg
    assert "URL fetch failure" in msg
    assert get_model_spec(name).weights_file in msg  # the file to copy
    assert str(home / "models") in msg  # where keras' get_file looks for it
    # the library names its parameter, the CLI its flag (tfxai.messages)
    assert "pass weights /path/to/weights.h5" in msg and "use weights none" in msg
    cli = error_text(info.value)
    assert "--weights /path/to/weights.h5" in cli and "--weights none" in cli
    assert isinstance(info.value.__cause__, Exception)


def _fake_keras_home(monkeypatch, tmp_path) -> Path:
    """Keras resolves its home ($KERAS_HOME or ~/.keras) once, at import: set that value."""
    home = tmp_path / "keras_home"
    home.mkdir()
    monkeypatch.setattr(keras.src.backend.config, "_KERAS_DIR", str(home))
    return home


def test_imagenet_offline_message_names_the_cache_keras_really_reads(monkeypatch, tmp_path):
    monkeypatch.setattr(keras.applications, "VGG16", _fetch_failure)
    home = _fake_keras_home(monkeypatch, tmp_path)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "too_late"))  # read by Keras at import only
    with pytest.raises(ModelLoadError) as info:
        load_model("vgg16", weights="imagenet")
    assert str(home / "models") in str(info.value)
    home.chmod(0o500)  # not writable: Keras falls back to /tmp/.keras
    try:
        with pytest.raises(ModelLoadError) as info:
            load_model("vgg16", weights="imagenet")
    finally:
        home.chmod(0o700)
    if os.getuid() != 0:  # root writes anywhere
        assert "/tmp/.keras/models" in str(info.value)


def test_weights_path_that_does_not_exist(tmp_path):
    missing = tmp_path / "nowhere" / "vgg16.h5"
    with pytest.raises(ModelLoadError, match="does not exist") as info:
        load_model("vgg16", weights=str(missing))
    assert str(missing) in str(info.value)


def _tiny_builder(weights):
    assert weights is None
    inp = keras.Input((16, 16, 3))
    h = L.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inp)
    h = L.GlobalAveragePooling2D()(h)
    return keras.Model(inp, L.Dense(7, activation="softmax", name="predictions")(h))


@pytest.fixture
def tinynet(monkeypatch):
    """A registered backbone cheap enough to build several times."""
    spec = ModelSpec("tinynet", _tiny_builder, lambda x: tf.convert_to_tensor(x) / 255.0,
                     (16, 16), "conv", "unit")
    monkeypatch.setitem(MODELS, "tinynet", spec)
    return spec


def _weights(bb):
    return [w.numpy() for w in bb.keras_model.weights]


def test_random_weights_are_seeded_and_warn(tinynet):
    with pytest.warns(RandomWeightsWarning, match="seed 3"):
        a = load_model("tinynet", weights="none", seed=3)
    with pytest.warns(RandomWeightsWarning):
        b = load_model("TinyNet", weights="none", seed=3)
    with pytest.warns(RandomWeightsWarning):
        c = load_model("tinynet", weights="none", seed=4)
    for wa, wb in zip(_weights(a), _weights(b), strict=True):
        np.testing.assert_array_equal(wa, wb)
    assert not np.array_equal(_weights(a)[0], _weights(c)[0])


def test_weights_file_round_trip(tinynet, tmp_path):
    with pytest.warns(RandomWeightsWarning):
        src = load_model("tinynet", weights="none", seed=5)
    path = tmp_path / "tiny.weights.h5"
    src.keras_model.save_weights(str(path))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RandomWeightsWarning)  # a file is not random
        loaded = load_model("tinynet", weights=str(path), seed=99)
    assert loaded.weights == str(path.resolve())
    for wa, wb in zip(_weights(src), _weights(loaded), strict=True):
        np.testing.assert_array_equal(wa, wb)
    x = np.random.default_rng(0).uniform(0, 255, (2, 16, 16, 3)).astype(np.float32)
    np.testing.assert_allclose(loaded.predict(x), src.predict(x), rtol=1e-6)


def test_weights_file_that_is_not_weights(tinynet, tmp_path):
    bad = tmp_path / "bad.h5"
    bad.write_text("not hdf5")
    with pytest.raises(ModelLoadError, match="cannot load weights") as info:
        load_model("tinynet", weights=str(bad))
    assert str(bad) in str(info.value)


def test_unknown_model_name_lists_known_names():
    with pytest.raises(ModelLoadError) as info:
        load_model("vgg17", weights="none")
    msg = str(info.value)
    assert "'vgg17'" in msg
    for name in BACKBONES:
        assert name in msg
    assert isinstance(info.value, ValueError)


def test_missing_and_corrupt_model_files(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist") as info:
        load_model(tmp_path / "missing.keras")
    assert "missing.keras" in str(info.value)
    bad = tmp_path / "corrupt.keras"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ModelLoadError, match="cannot load Keras model") as info:
        load_model(bad)
    assert str(bad) in str(info.value)


# --------------------------------------------------------------------------------------- custom models


def _small_cnn(seed: int = 0, head: str = "fused", size: int | None = 32) -> keras.Model:
    """conv(relu) → pool → conv → BN → relu ("last_relu") → GAP → classifier head.

    head: "fused" Dense(softmax), "activation" Dense + Activation("softmax"), "softmax" Dense +
    Softmax(), "logits" Dense only, "sigmoid" Dense(sigmoid).
    """
    keras.utils.set_random_seed(seed)
    inp = keras.Input((size, size, 3))
    h = L.Conv2D(6, 3, padding="same", activation="relu", name="conv1")(inp)
    h = L.MaxPooling2D(2, name="pool1")(h)
    h = L.Conv2D(8, 3, padding="same", name="conv2")(h)
    h = L.BatchNormalization(name="bn2")(h)
    h = L.Activation("relu", name="last_relu")(h)
    h = L.GlobalAveragePooling2D(name="gap")(h)
    if head == "fused":
        out = L.Dense(5, activation="softmax", name="dense")(h)
    elif head == "sigmoid":
        out = L.Dense(5, activation="sigmoid", name="dense")(h)
    else:
        out = L.Dense(5, name="dense")(h)
        if head == "activation":
            out = L.Activation("softmax", name="probs")(out)
        elif head == "softmax":
            out = L.Softmax(name="probs")(out)
    model = keras.Model(inp, out, name=f"small_{head}")
    kernel = np.random.default_rng(seed).normal(0, 2.0, (8, 5)).astype(np.float32)
    model.get_layer("dense").set_weights([kernel, np.zeros(5, np.float32)])
    return model


@pytest.fixture(scope="module")
def x32():
    return np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)


def test_custom_model_object_defaults(x32):
    model = _small_cnn()
    bb = load_model(model)
    assert bb.name == "small_fused" and bb.weights == "custom"
    assert bb.keras_model is model
    assert bb.input_size == (32, 32) and bb.num_classes == 5
    assert bb.last_conv_layer == "last_relu"  # the last 4-D layer before the pooling head
    np.testing.assert_array_equal(bb.preprocess(x32).numpy(), x32)  # identity preprocessing
    np.testing.assert_allclose(bb.predict(x32), model(x32).numpy(), rtol=1e-5, atol=1e-7)
    acts, logits = bb.layer_model()(bb.preprocess(x32))
    assert tuple(acts.shape) == (3, 16, 16, 8)
    np.testing.assert_allclose(logits.numpy(), bb.predict_logits(x32), rtol=1e-5, atol=1e-6)
    t = np.array([4, 0, 2])
    np.testing.assert_allclose(bb.target_logits(x32, t).numpy(),
                               bb.predict_logits(x32)[np.arange(3), t], rtol=1e-5, atol=1e-6)
    assert load_model(model, name="mine").name == "mine"


def test_last_conv_layer_detection_skips_pooling_and_dense():
    keras.utils.set_random_seed(0)
    inp = keras.Input((20, 20, 3))
    h = L.Conv2D(4, 3, name="c1")(inp)
    h = L.Conv2D(4, 3, name="c2")(h)
    h = L.MaxPooling2D(name="mp")(h)
    h = L.Flatten(name="flat")(h)
    out = L.Dense(3, activation="softmax")(h)
    assert find_last_conv_layer(flatten(keras.Model(inp, out))) == "c2"
    assert load_model(keras.Model(inp, out)).last_conv_layer == "c2"
    # a layer whose output is 1×1 is not a spatial map: the search goes on before it
    h = L.Conv2D(4, 3, name="d1")(inp)
    h = L.Conv2D(4, 18, name="d2_1x1")(h)
    out = L.Dense(3, activation="softmax")(L.Flatten()(h))
    assert find_last_conv_layer(flatten(keras.Model(inp, out))) == "d1"


def test_a_model_without_conv_layers_loads_and_only_cams_refuse_it():
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 3))
    mlp = keras.Model(inp, L.Dense(3, activation="softmax")(L.Dense(4)(L.Flatten()(inp))))
    bb = load_model(mlp)
    assert bb.last_conv_layer is None and bb.input_size == (8, 8)
    x = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype(np.float32)
    assert tfxai.get_attributer("saliency", bb).attribute(x, [0, 1]).shape == (2, 8, 8, 3)
    with pytest.raises(ValueError, match="no layer with a 4-D"):
        tfxai.get_attributer("gradcam", bb)


def test_explicit_last_conv_layer_and_bad_name():
    model = _small_cnn()
    assert load_model(model, last_conv_layer="conv1").last_conv_layer == "conv1"
    with pytest.raises(ModelLoadError, match="'no_such_layer'"):
        load_model(model, last_conv_layer="no_such_layer")
    bb = load_model(model)
    with pytest.raises(ValueError, match="'nope'.*last_relu"):
        bb.layer_model("nope")


def test_custom_preprocess_options(x32):
    model = _small_cnn()

    def halve(x):
        return tf.convert_to_tensor(x, tf.float32) / 2.0

    bb = load_model(model, preprocess=halve)
    np.testing.assert_allclose(bb.preprocess(x32).numpy(), x32 / 2)
    np.testing.assert_allclose(bb.predict(x32), model(x32 / 2).numpy(), rtol=1e-5, atol=1e-7)
    assert bb.describe()["preprocess"] == "halve"

    bb = load_model(model, preprocess="vgg16")
    from keras.applications.vgg16 import preprocess_input

    np.testing.assert_allclose(bb.preprocess(x32).numpy(), preprocess_input(x32.copy()),
                               rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(bb.predict(x32), model(preprocess_input(x32.copy())).numpy(),
                               rtol=1e-4, atol=1e-7)
    assert bb.describe()["preprocess"] == "caffe"
    np.testing.assert_array_equal(load_model(model, preprocess="none").preprocess(x32), x32)
    with pytest.raises(ModelLoadError, match="unknown model 'vgg17'"):
        load_model(model, preprocess="vgg17")
    with pytest.raises(ValueError, match="preprocess"):
        load_model(model, preprocess=3)


def test_input_size_option_and_variable_size_models():
    model = _small_cnn(size=None)
    with pytest.raises(ModelLoadError, match="input_size"):
        load_model(model)
    bb = load_model(model, input_size=(24, 40))
    assert bb.input_size == (24, 40) and bb.input_shape == (24, 40, 3)
    x = np.zeros((2, 24, 40, 3), np.float32)
    assert bb.predict(x).shape == (2, 5)
    with pytest.raises(ValueError, match=r"expected images of shape \(N, 24, 40, 3\)"):
        bb.predict(np.zeros((2, 32, 32, 3), np.float32))


@pytest.mark.parametrize("head", ["fused", "activation", "softmax"])
def test_softmax_is_stripped(head, x32):
    model = _small_cnn(head=head)
    before = model(x32).numpy()
    bb = load_model(model)
    z = bb.predict_logits(x32)
    ref = _dense_logits(model, "dense", x32)
    np.testing.assert_allclose(z, ref, rtol=1e-5, atol=1e-5)
    assert np.abs(z - z.mean(axis=1, keepdims=True)).max() > 1.0  # real logits, not probabilities
    np.testing.assert_allclose(bb.predict(x32), before, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(_softmax(z), bb.predict(x32), atol=1e-6)
    # gradients flow through the logits, not through the saturated softmax
    with tf.GradientTape() as tape:
        xt = tf.constant(x32)
        tape.watch(xt)
        score = bb.target_logits(xt, [0, 1, 2])
    assert np.abs(tape.gradient(score, xt).numpy()).max() > 0
    # wrapping does not modify the user's model
    np.testing.assert_array_equal(model(x32).numpy(), before)
    np.testing.assert_allclose(model(x32).numpy().sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("variant", ["dense_tf_nn", "activation_tf_nn", "functional_tf_nn"])
def test_softmax_written_with_tf_nn_is_stripped(variant, x32):
    keras.utils.set_random_seed(0)
    inp = keras.Input((32, 32, 3))
    h = L.GlobalAveragePooling2D()(L.Conv2D(4, 3, activation="relu", name="conv")(inp))
    if variant == "dense_tf_nn":
        out = L.Dense(5, activation=tf.nn.softmax, name="dense")(h)
    elif variant == "activation_tf_nn":
        out = L.Activation(tf.nn.softmax)(L.Dense(5, name="dense")(h))
    else:
        out = keras.ops.softmax(L.Dense(5, name="dense")(h))
    model = keras.Model(inp, out)
    bb = load_model(model)
    np.testing.assert_allclose(bb.predict_logits(x32), _dense_logits(model, "dense", x32),
                               rtol=1e-5, atol=1e-5)


def test_output_logits(x32):
    model = _small_cnn(head="logits")
    bb = load_model(model, output="logits")
    assert bb.keras_model is model
    np.testing.assert_allclose(bb.predict_logits(x32), model(x32).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bb.predict(x32), _softmax(model(x32).numpy()), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(bb.predict(x32).sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("head", ["logits", "sigmoid"])
def test_probabilities_without_a_softmax_is_a_clear_error(head):
    with pytest.raises(ModelLoadError, match="is not a softmax") as info:
        load_model(_small_cnn(head=head))
    assert "output='logits'" in str(info.value) and "'dense'" in str(info.value)


def test_bad_output_option():
    with pytest.raises(ValueError, match="output must be 'probabilities' or 'logits'"):
        load_model(_small_cnn(), output="scores")


@pytest.mark.filterwarnings("ignore:You are saving your model as an HDF5 file")
@pytest.mark.parametrize("suffix", [".keras", ".h5"])
@pytest.mark.parametrize("head", ["fused", "softmax"])
def test_saved_model_files(tmp_path, suffix, head, x32):
    model = _small_cnn(seed=3, head=head)
    path = tmp_path / f"my_model{suffix}"
    model.save(path)
    bb = load_model(path)
    assert bb.name == "my_model" and bb.weights == str(path.resolve())
    assert bb.input_size == (32, 32) and bb.last_conv_layer == "last_relu"
    np.testing.assert_allclose(bb.predict(x32), model(x32).numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(bb.predict_logits(x32), _dense_logits(model, "dense", x32),
                               rtol=1e-5, atol=1e-5)
    bb = load_model(str(path), preprocess="vgg16", last_conv_layer="conv2", name="named")
    assert (bb.name, bb.last_conv_layer, bb.input_size) == ("named", "conv2", (32, 32))
    assert isinstance(tfxai.load_model(Path(path)), tfxai.Backbone)


def _transfer_model(kind: str) -> tuple[keras.Model, keras.Model]:
    """A pretrained-style base as a nested sub-model under a new head (the usual fine-tuning form),
    and the same layers written flat (shared weights) as the reference."""
    keras.utils.set_random_seed(0)
    base_in = keras.Input((32, 32, 3))
    c1, c2 = L.Conv2D(4, 3, name="b_conv1"), L.Conv2D(8, 3, activation="relu", name="b_conv2")
    base = keras.Model(base_in, c2(c1(base_in)), name="base")
    gap, head = L.GlobalAveragePooling2D(), L.Dense(5, activation="softmax", name="head")
    if kind == "sequential":
        nested = keras.Sequential([keras.Input((32, 32, 3)), base, gap, head])
    else:
        inp = keras.Input((32, 32, 3))
        nested = keras.Model(inp, head(gap(base(inp))))
    flat_in = keras.Input((32, 32, 3))
    flat = keras.Model(flat_in, head(gap(c2(c1(flat_in)))))
    return nested, flat


@pytest.mark.parametrize("kind", ["sequential", "functional"])
def test_gradcam_on_a_nested_base_model(kind, x32):
    """Grad-CAM finds the inner last conv layer by itself and equals Grad-CAM on the same layers
    written flat; the inner layer can also be named by its path or its bare name."""
    nested, flat = _transfer_model(kind)
    t = np.array([0, 1, 2])
    bb = load_model(nested)
    assert bb.last_conv_layer == "base/b_conv2"
    assert load_model(nested, last_conv_layer="b_conv1").last_conv_layer == "base/b_conv1"
    assert load_model(nested, last_conv_layer="base/b_conv1").last_conv_layer == "base/b_conv1"
    cam = tfxai.get_attributer("gradcam", bb).attribute(x32, t)
    ref = tfxai.get_attributer("gradcam", load_model(flat, last_conv_layer="b_conv2"))
    np.testing.assert_allclose(cam, ref.attribute(x32, t), rtol=1e-4, atol=1e-7)
