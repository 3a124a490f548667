"""Keras 2 ``.keras`` archives (what tfxai 0.1 ``finetune`` wrote with TF 2.14) loaded on Keras 3.

The archives are written here, without Keras 2: ``config.json``, ``metadata.json`` and
``model.weights.h5`` with json + zipfile + h5py, in the layout Keras 2.14's ``model.save()``
writes. The layer configs, the weight paths (``_layer_checkpoint_dependencies/conv2d_1/vars/0``),
the zip entries and the optimizer/metrics groups of a compiled model were checked against
archives saved by TF 2.14.1 / Keras 2.14 for the same models (configs equal as JSON, the same h5
datasets, and Keras 2.14 loads the archives written here with the outputs computed below). The
expected outputs are computed with numpy from the weights written.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

import tfxai
from tfxai import legacy
from tfxai.models import ModelLoadError

KERAS2 = "2.14.0"
DEPS = "_layer_checkpoint_dependencies"

# The key of a layer in Keras 2.14's model.weights.h5: its class name in snake case.
WEIGHT_KEYS = {
    "InputLayer": "input_layer", "Dense": "dense", "Rescaling": "rescaling",
    "Normalization": "normalization", "Conv2D": "conv2d", "DepthwiseConv2D": "depthwise_conv2d",
    "BatchNormalization": "batch_normalization", "Activation": "activation",
    "MaxPooling2D": "max_pooling2d", "GlobalAveragePooling2D": "global_average_pooling2d",
    "Reshape": "reshape", "Multiply": "multiply", "Add": "add", "Dropout": "dropout",
    "Flatten": "flatten", "Lambda": "lambda", "Functional": "functional",
    "Sequential": "sequential",
}

# ------------------------------------------------------------------------ numpy reference ops


def _act(x: np.ndarray, name: str) -> np.ndarray:
    if name == "linear":
        return x
    if name == "relu":
        return np.maximum(x, 0.0)
    if name == "sigmoid":
        return 1.0 / (1.0 + np.exp(-x))
    if name == "swish":
        return x / (1.0 + np.exp(-x))
    if name == "softmax":
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    raise ValueError(name)


def _pad(x: np.ndarray, k: int, s: int, padding: str) -> np.ndarray:
    if padding == "valid":
        return x
    pads = []
    for n in x.shape[1:3]:  # TensorFlow's "same": the extra pixel goes after
        total = max((-(-n // s) - 1) * s + k - n, 0)
        pads.append((total // 2, total - total // 2))
    return np.pad(x, [(0, 0), *pads, (0, 0)])


def _windows(x: np.ndarray, k: int, s: int, padding: str):
    """(i, j, window) for every kernel offset: window[n, y, x, c] = padded[n, y*s+i, x*s+j, c]."""
    xp = _pad(x, k, s, padding)
    ho, wo = (xp.shape[1] - k) // s + 1, (xp.shape[2] - k) // s + 1
    for i in range(k):
        for j in range(k):
            yield i, j, xp[:, i : i + s * (ho - 1) + 1 : s, j : j + s * (wo - 1) + 1 : s, :]


def _conv(x, kernel, bias, s, padding, act):
    out = sum(win @ kernel[i, j] for i, j, win in _windows(x, kernel.shape[0], s, padding))
    return _act(out + (0.0 if bias is None else bias), act)


def _depthwise(x, kernel, s, padding):
    return sum(win * kernel[i, j, :, 0] for i, j, win in _windows(x, kernel.shape[0], s, padding))


def _batch_norm(x, gamma, beta, mean, var, eps):
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


# ------------------------------------------------------------------------ Keras 2.14 configs


def _init(name: str, **config: Any) -> dict:
    return {"module": "keras.initializers", "class_name": name, "config": config,
            "registered_name": None}


@dataclass
class Layer2:
    """One layer of a Keras 2 model: its class, config (without name/trainable/dtype), weights
    (in Keras 2's save order), inputs (layer names) and a numpy forward function."""

    cls: str
    name: str
    config: dict
    inputs: list[str]
    forward: Callable[[list[np.ndarray]], np.ndarray]
    weights: list[np.ndarray] = field(default_factory=list)
    trainable: bool = True
    net: Net | None = None  # a nested model


@dataclass
class Net:
    """A Keras 2 functional or Sequential model: writes its config and runs it in numpy."""

    name: str
    layers: list[Layer2]
    outputs: list[str]
    sequential: bool = False

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        values: dict[str, np.ndarray] = {}
        for layer in self.layers:
            args = [values[i] for i in layer.inputs] if layer.inputs else [x]
            values[layer.name] = np.asarray(layer.forward(args), np.float64)
        return values

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.run(np.asarray(x, np.float64))[self.outputs[0]]

    def config(self, x: np.ndarray) -> dict:
        """The Keras 2.14 config of this model, shapes taken from a forward pass on ``x``."""
        values = self.run(np.asarray(x, np.float64))
        entries = []
        for layer in self.layers:
            args = [values[i] for i in layer.inputs] if layer.inputs else [np.asarray(x)]
            shapes = [[None, *a.shape[1:]] for a in args]
            if layer.net is not None:
                entry = layer.net.config(args[0])
                entry["config"]["name"] = layer.name
            elif layer.cls == "InputLayer":
                entry = {"module": "keras.layers", "class_name": "InputLayer",
                         "config": {**layer.config, "name": layer.name}, "registered_name": None}
            else:
                cfg = {"name": layer.name, "trainable": layer.trainable, "dtype": "float32",
                       **layer.config}
                entry = {"module": "keras.layers", "class_name": layer.cls, "config": cfg,
                         "registered_name": None,
                         "build_config": {"input_shape": shapes[0] if len(shapes) == 1 else shapes}}
            if not self.sequential:
                entry["name"] = layer.name
                entry["inbound_nodes"] = [] if layer.cls == "InputLayer" else [
                    [[i, 1 if self._nested(i) else 0, 0, {}] for i in layer.inputs]
                ]
            entries.append(entry)
        shape = [None, *np.asarray(x).shape[1:]]
        if self.sequential:
            return {"module": "keras", "class_name": "Sequential",
                    "config": {"name": self.name, "layers": entries}, "registered_name": None,
                    "build_config": {"input_shape": shape}}
        inputs = [layer.name for layer in self.layers if layer.cls == "InputLayer"]
        out = {"module": "keras.src.engine.functional", "class_name": "Functional",
               "config": {"name": self.name, "trainable": True, "layers": entries,
                          "input_layers": [[n, 0, 0] for n in inputs],
                          "output_layers": [[n, 0, 0] for n in self.outputs]},
               "registered_name": "Functional", "build_config": {"input_shape": shape}}
        return out

    def _nested(self, name: str) -> bool:  # Keras 2 numbers a nested model's calls from 1
        return any(layer.name == name and layer.net is not None for layer in self.layers)

    def write_weights(self, group: h5py.Group) -> None:
        """Keras 2.14's layout: ``_layer_checkpoint_dependencies/<class key>[_n]/vars/<i>`` in
        the order of ``model.layers`` (a Sequential's ``layers`` leave its InputLayer out)."""
        deps = group.create_group(DEPS)
        counts: dict[str, int] = {}
        for layer in self.layers:
            if self.sequential and layer.cls == "InputLayer":
                continue
            base = WEIGHT_KEYS["Functional" if layer.net is not None else layer.cls]
            n = counts[base] = counts.get(base, -1) + 1
            sub = deps.create_group(base if n == 0 else f"{base}_{n}")
            if layer.net is not None:
                layer.net.write_weights(sub)
            else:
                store = sub.create_group("vars")
                for i, w in enumerate(layer.weights):
                    store[str(i)] = w
        group.create_group("vars")


def input_layer(name: str, shape: tuple[int, ...]) -> Layer2:
    cfg = {"batch_input_shape": [None, *shape], "dtype": "float32", "sparse": False,
           "ragged": False}
    return Layer2("InputLayer", name, cfg, [], lambda a: a[0])


def dense(name, src, kernel, bias, activation="linear", trainable=True) -> Layer2:
    cfg = {"units": kernel.shape[1], "activation": activation, "use_bias": True,
           "kernel_initializer": _init("GlorotUniform", seed=None), "bias_initializer": _init("Zeros"),
           "kernel_regularizer": None, "bias_regularizer": None, "activity_regularizer": None,
           "kernel_constraint": None, "bias_constraint": None}
    return Layer2("Dense", name, cfg, [src], lambda a: _act(a[0] @ kernel + bias, activation),
                  [kernel, bias], trainable)


def conv(name, src, kernel, bias=None, strides=1, padding="same", activation="linear") -> Layer2:
    k = kernel.shape[0]
    cfg = {"filters": kernel.shape[3], "kernel_size": [k, k], "strides": [strides, strides],
           "padding": padding, "data_format": "channels_last", "dilation_rate": [1, 1],
           "groups": 1, "activation": activation, "use_bias": bias is not None,
           "kernel_initializer": _init("GlorotUniform", seed=None),
           "bias_initializer": _init("Zeros"), "kernel_regularizer": None,
           "bias_regularizer": None, "activity_regularizer": None, "kernel_constraint": None,
           "bias_constraint": None}
    weights = [kernel] if bias is None else [kernel, bias]
    return Layer2("Conv2D", name, cfg, [src],
                  lambda a: _conv(a[0], kernel, bias, strides, padding, activation), weights)


def depthwise(name, src, kernel, padding="same") -> Layer2:
    k = kernel.shape[0]
    cfg = {"kernel_size": [k, k], "strides": [1, 1], "padding": padding,
           "data_format": "channels_last", "dilation_rate": [1, 1], "groups": 1,
           "activation": "linear", "use_bias": False, "bias_initializer": _init("Zeros"),
           "bias_regularizer": None, "activity_regularizer": None, "bias_constraint": None,
           "depth_multiplier": 1, "depthwise_initializer": _init("GlorotUniform", seed=None),
           "depthwise_regularizer": None, "depthwise_constraint": None}
    return Layer2("DepthwiseConv2D", name, cfg, [src],
                  lambda a: _depthwise(a[0], kernel, 1, padding), [kernel])


def batch_norm(name, src, rng, channels, momentum=0.99) -> Layer2:
    gamma, beta, mean = (rng.normal(m, 0.5, channels).astype(np.float32) for m in (1, 0, 0))
    var = rng.uniform(0.5, 1.5, channels).astype(np.float32)
    cfg = {"axis": [3], "momentum": momentum, "epsilon": 0.001, "center": True, "scale": True,
           "beta_initializer": _init("Zeros"), "gamma_initializer": _init("Ones"),
           "moving_mean_initializer": _init("Zeros"), "moving_variance_initializer": _init("Ones"),
           "beta_regularizer": None, "gamma_regularizer": None, "beta_constraint": None,
           "gamma_constraint": None}
    return Layer2("BatchNormalization", name, cfg, [src],
                  lambda a: _batch_norm(a[0], gamma, beta, mean, var, 0.001), [gamma, beta, mean, var])


def activation(name, src, act) -> Layer2:
    return Layer2("Activation", name, {"activation": act}, [src], lambda a: _act(a[0], act))


def rescaling(name, src, scale) -> Layer2:
    return Layer2("Rescaling", name, {"scale": scale, "offset": 0.0}, [src],
                  lambda a: a[0] * np.asarray(scale))


def normalization(name, src, mean, var) -> Layer2:
    """EfficientNet's Normalization: mean and variance are weights (adapt state), with a count."""
    cfg = {"axis": [3], "invert": False, "mean": None, "variance": None}
    return Layer2("Normalization", name, cfg, [src],
                  lambda a: (a[0] - mean) / np.maximum(np.sqrt(var), 1e-7),
                  [mean, var, np.array(7, np.int64)])


def max_pool(name, src) -> Layer2:
    cfg = {"pool_size": [2, 2], "padding": "valid", "strides": [2, 2], "data_format": "channels_last"}

    def forward(a):
        n, h, w, c = a[0].shape
        return a[0][:, : h // 2 * 2, : w // 2 * 2].reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))

    return Layer2("MaxPooling2D", name, cfg, [src], forward)


def gap(name, src) -> Layer2:
    return Layer2("GlobalAveragePooling2D", name, {"data_format": "channels_last", "keepdims": False},
                  [src], lambda a: a[0].mean(axis=(1, 2)))


def reshape(name, src, target) -> Layer2:
    return Layer2("Reshape", name, {"target_shape": list(target)}, [src],
                  lambda a: a[0].reshape(len(a[0]), *target))


def dropout(name, src, rate, noise_shape) -> Layer2:
    return Layer2("Dropout", name, {"rate": rate, "noise_shape": noise_shape, "seed": None},
                  [src], lambda a: a[0])


def flatten(name, src) -> Layer2:
    return Layer2("Flatten", name, {"data_format": "channels_last"}, [src],
                  lambda a: a[0].reshape(len(a[0]), -1))


def merge(cls, name, srcs) -> Layer2:
    fn = (lambda a: a[0] * a[1]) if cls == "Multiply" else (lambda a: a[0] + a[1])
    return Layer2(cls, name, {}, list(srcs), fn)


def nested(name, src, net: Net) -> Layer2:
    return Layer2("Functional", name, {}, [src] if src else [], lambda a: net(a[0]), net=net)


def _w(rng, *shape, scale=0.5):
    return rng.normal(0, scale, shape).astype(np.float32)


# ------------------------------------------------------------------------ the models


def finetuned_small_cnn() -> Net:
    """What tfxai 0.1 ``finetune`` wrote: a frozen per-pixel Dense(3) ``preprocess`` layer,
    small_cnn's layers (Keras 2 names with '/' as in DenseNet121) and a GAP + softmax head."""
    rng = np.random.default_rng(1)
    layers = [
        input_layer("image", (12, 12, 3)),
        dense("preprocess", "image", _w(rng, 3, 3) + np.eye(3, dtype=np.float32), _w(rng, 3, scale=20),
              trainable=False),
        rescaling("rescale", "preprocess", 1 / 255.0),
        conv("block1/conv", "rescale", _w(rng, 3, 3, 3, 4)),
        batch_norm("block1/bn", "block1/conv", rng, 4, momentum=0.9),
        activation("block1/relu", "block1/bn", "relu"),
        max_pool("pool1", "block1/relu"),
        conv("last_conv", "pool1", _w(rng, 3, 3, 4, 6), _w(rng, 6), activation="relu"),
        gap("head_pool", "last_conv"),
        dense("predictions", "head_pool", _w(rng, 6, 3, scale=2.0), _w(rng, 3), "softmax"),
    ]
    return Net("small_cnn_finetuned", layers, ["predictions"])


def efficientnet_block() -> Net:
    """EfficientNetB0's layer kinds: Rescaling (scalar and per channel), Normalization with
    adapt state, strided conv, DepthwiseConv2D, swish, the squeeze-and-excitation gate (GAP,
    Reshape, 1x1 convs, Multiply), Dropout with a noise shape, the residual Add."""
    rng = np.random.default_rng(2)
    layers = [
        input_layer("image", (8, 8, 3)),
        rescaling("rescaling", "image", 1 / 255.0),
        normalization("normalization", "rescaling", np.float32([0.4, 0.5, 0.6]),
                      np.float32([0.05, 0.06, 0.07])),
        rescaling("rescaling_1", "normalization", [2.0, 2.5, 3.0]),
        conv("stem_conv", "rescaling_1", _w(rng, 3, 3, 3, 8), strides=2),
        batch_norm("stem_bn", "stem_conv", rng, 8),
        activation("stem_activation", "stem_bn", "swish"),
        depthwise("block1a_dwconv", "stem_activation", _w(rng, 3, 3, 8, 1)),
        batch_norm("block1a_bn", "block1a_dwconv", rng, 8),
        activation("block1a_activation", "block1a_bn", "swish"),
        gap("block1a_se_squeeze", "block1a_activation"),
        reshape("block1a_se_reshape", "block1a_se_squeeze", (1, 1, 8)),
        conv("block1a_se_reduce", "block1a_se_reshape", _w(rng, 1, 1, 8, 2), _w(rng, 2),
             activation="swish"),
        conv("block1a_se_expand", "block1a_se_reduce", _w(rng, 1, 1, 2, 8), _w(rng, 8),
             activation="sigmoid"),
        merge("Multiply", "block1a_se_excite", ["block1a_activation", "block1a_se_expand"]),
        dropout("block1a_drop", "block1a_se_excite", 0.2, [None, 1, 1, 1]),
        merge("Add", "block1a_add", ["block1a_drop", "stem_activation"]),
        gap("avg_pool", "block1a_add"),
        dense("predictions", "avg_pool", _w(rng, 8, 3, scale=2.0), _w(rng, 3), "softmax"),
    ]
    return Net("efficientnet_block", layers, ["predictions"])


def _backbone(rng) -> Net:
    layers = [
        input_layer("inner_input", (8, 8, 3)),
        conv("inner_conv", "inner_input", _w(rng, 3, 3, 3, 4, scale=0.05), _w(rng, 4),
             padding="valid", activation="relu"),
        batch_norm("inner_bn", "inner_conv", rng, 4),
    ]
    return Net("backbone", layers, ["inner_bn"])


def transfer_sequential() -> Net:
    """``Sequential([Input, <functional backbone>, GAP, Dense])``: a nested model."""
    rng = np.random.default_rng(3)
    layers = [
        input_layer("image", (8, 8, 3)),
        nested("backbone", None, _backbone(rng)),
        gap("pool", "backbone"),
        dense("logits", "pool", _w(rng, 4, 2), _w(rng, 2)),
    ]
    for prev, layer in zip(layers, layers[1:], strict=False):
        layer.inputs = [prev.name]
    return Net("transfer_seq", layers, ["logits"], sequential=True)


def transfer_functional() -> Net:
    """The functional equivalent: Keras 2 numbers the nested model's call from 1."""
    rng = np.random.default_rng(4)
    layers = [
        input_layer("image", (8, 8, 3)),
        nested("backbone", "image", _backbone(rng)),
        gap("pool", "backbone"),
        dense("logits", "pool", _w(rng, 4, 2), _w(rng, 2)),
    ]
    return Net("transfer_fn", layers, ["logits"])


def plain_sequential() -> Net:
    rng = np.random.default_rng(5)
    layers = [
        input_layer("input_1", (6, 6, 3)),
        conv("conv2d", "input_1", _w(rng, 3, 3, 3, 2, scale=0.05), _w(rng, 2), padding="valid",
             activation="relu"),
        flatten("flatten", "conv2d"),
        dense("dense", "flatten", _w(rng, 32, 3), _w(rng, 3), "softmax"),
    ]
    return Net("sequential", layers, ["dense"], sequential=True)


MODELS = {
    "small_cnn": finetuned_small_cnn,
    "efficientnet_block": efficientnet_block,
    "transfer_sequential": transfer_sequential,
    "transfer_functional": transfer_functional,
    "plain_sequential": plain_sequential,
}

# What tfxai 0.1 finetune compiled (Keras 2.14 writes it; it does not matter for inference).
COMPILE_CONFIG = {
    "optimizer": {"module": "keras.optimizers.experimental", "class_name": "SGD", "config": {
        "name": "SGD", "weight_decay": None, "clipnorm": None, "global_clipnorm": None,
        "clipvalue": None, "use_ema": False, "ema_momentum": 0.99, "ema_overwrite_frequency": None,
        "jit_compile": False, "is_legacy_optimizer": False, "learning_rate": 0.0010000000474974513,
        "momentum": 0.9, "nesterov": False}, "registered_name": None},
    "loss": "sparse_categorical_crossentropy", "metrics": ["accuracy"], "loss_weights": None,
    "weighted_metrics": None, "run_eagerly": None, "steps_per_execution": None,
    "jit_compile": None,
}


def sample_images(net: Net, n: int = 3, seed: int = 0) -> np.ndarray:
    shape = net.layers[0].config["batch_input_shape"][1:]
    return np.random.default_rng(seed).uniform(0, 255, (n, *shape)).astype(np.float32)


def write_keras2_archive(path: Path, net: Net, compiled: bool = False,
                         config: dict | None = None, weights: bytes | None = None) -> Path:
    """Write ``net`` as Keras 2.14's ``model.save(path)`` does (``config``/``weights`` override
    the generated config.json / model.weights.h5 for broken-archive tests)."""
    if config is None:
        config = net.config(sample_images(net, 1))
        if compiled:
            config["compile_config"] = COMPILE_CONFIG
    if weights is None:
        buffer = io.BytesIO()
        with h5py.File(buffer, "w") as h5:
            net.write_weights(h5)
            if compiled:  # a trained model also holds its optimizer and metric state
                trainable = [w for layer in net.layers if layer.trainable
                             for w in layer.weights[: 2 if layer.cls == "BatchNormalization" else None]]
                opt = h5.create_group("optimizer").create_group("vars")
                opt["0"] = np.array(12, np.int64)
                for i, w in enumerate(trainable, start=1):
                    opt[str(i)] = np.zeros_like(w)
                for metric in ("mean", "mean_metric_wrapper"):
                    store = h5.create_group(f"metrics/{metric}/vars")
                    store["0"], store["1"] = np.float32(3.0), np.float32(12.0)
        weights = buffer.getvalue()
    metadata = {"keras_version": KERAS2, "date_saved": "2024-05-02@10:11:12"}
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("metadata.json", json.dumps(metadata))
        zf.writestr("config.json", json.dumps(config))
        zf.writestr("model.weights.h5", weights)
    return path


def h5_datasets(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as zf, h5py.File(io.BytesIO(zf.read("model.weights.h5")), "r") as h5:
        found: list[str] = []
        h5.visititems(lambda name, obj: found.append(name) if isinstance(obj, h5py.Dataset) else None)
    return sorted(found)


@pytest.fixture(scope="module")
def archives(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("keras2")
    return {name: write_keras2_archive(folder / f"{name}.keras", build(), compiled=name == "small_cnn")
            for name, build in MODELS.items()}


# ------------------------------------------------------------------------ the fixtures' layout


def test_fixture_weights_layout_is_keras_2_14s(archives):
    """The datasets Keras 2.14 wrote for these two models (listed from archives it saved)."""
    d = f"{DEPS}/"
    assert h5_datasets(archives["small_cnn"]) == sorted([
        *(f"{d}batch_normalization/vars/{i}" for i in range(4)),
        f"{d}conv2d/vars/0", f"{d}conv2d_1/vars/0", f"{d}conv2d_1/vars/1",
        f"{d}dense/vars/0", f"{d}dense/vars/1", f"{d}dense_1/vars/0", f"{d}dense_1/vars/1",
        "metrics/mean/vars/0", "metrics/mean/vars/1",
        "metrics/mean_metric_wrapper/vars/0", "metrics/mean_metric_wrapper/vars/1",
        *(f"optimizer/vars/{i}" for i in range(8)),
    ])
    inner = f"{d}functional/{DEPS}/"
    assert h5_datasets(archives["transfer_sequential"]) == sorted([
        f"{d}dense/vars/0", f"{d}dense/vars/1",
        *(f"{inner}batch_normalization/vars/{i}" for i in range(4)),
        f"{inner}conv2d/vars/0", f"{inner}conv2d/vars/1",
    ])
    with zipfile.ZipFile(archives["small_cnn"]) as zf:
        assert zf.namelist() == ["metadata.json", "config.json", "model.weights.h5"]
        config = json.loads(zf.read("config.json"))
    assert config["module"] == "keras.src.engine.functional"
    assert config["config"]["layers"][4]["config"]["axis"] == [3]


# ------------------------------------------------------------------------ conversion


def _close(got: Any, expected: np.ndarray, what: str) -> None:
    got = np.asarray(got)
    assert got.shape == expected.shape, what
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 * scale, err_msg=what)


@pytest.mark.parametrize("name", list(MODELS))
def test_converted_model_gives_the_original_outputs(archives, name):
    from tfxai.backend import keras

    net = MODELS[name]()
    x = sample_images(net)
    model = legacy.load_keras2_archive(archives[name], KERAS2)
    _close(model(x, training=False), net(x), "model output")
    if not net.sequential:  # every layer's output, not only the (possibly saturated) softmax
        expected = net.run(x.astype(np.float64))
        names = [layer.name for layer in net.layers  # a nested model's .output is its own
                 if layer.cls != "InputLayer" and layer.net is None]
        probe = keras.Model(model.inputs[0],
                            [model.get_layer(n.replace("/", "_")).output for n in names])
        for n, got in zip(names, probe(x, training=False), strict=True):
            _close(got, expected[n], f"layer {n!r}")


def test_layer_names_and_frozen_layers_carry_over(archives):
    model = legacy.load_keras2_archive(archives["small_cnn"], KERAS2)
    names = [layer.name for layer in model.layers]
    assert names[:5] == ["image", "preprocess", "rescale", "block1_conv", "block1_bn"]  # '/' -> '_'
    assert not model.get_layer("preprocess").trainable
    assert model.get_layer("last_conv").trainable
    kernel = model.get_layer("last_conv").get_weights()[0]
    np.testing.assert_array_equal(kernel, finetuned_small_cnn().layers[7].weights[0])


def test_tfxai_load_model_reads_a_finetune_output_and_gradcam_runs(archives):
    net = finetuned_small_cnn()
    bb = tfxai.load_model(archives["small_cnn"])
    assert bb.input_size == (12, 12) and bb.num_classes == 3
    assert bb.last_conv_layer == "last_conv"
    x = sample_images(net, 2, seed=7)
    values = net.run(x.astype(np.float64))
    head = finetuned_small_cnn().layers[-1]
    logits = values["head_pool"] @ head.weights[0] + head.weights[1]
    np.testing.assert_allclose(bb.predict_logits(x), logits, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(bb.predict(x), values["predictions"], rtol=1e-4, atol=1e-6)
    cam = np.asarray(tfxai.get_attributer("gradcam", bb).attribute(x, np.array([0, 2])))
    assert cam.shape == (2, 12, 12)
    assert np.isfinite(cam).all() and np.abs(cam).max() > 0


def test_nested_transfer_model_finds_the_inner_layer(archives):
    bb = tfxai.load_model(archives["transfer_functional"], output="logits")
    assert bb.last_conv_layer == "backbone/inner_bn"
    x = sample_images(transfer_functional(), 2)
    np.testing.assert_allclose(bb.predict_logits(x), transfer_functional()(x), rtol=1e-4, atol=1e-4)
    cam = np.asarray(tfxai.get_attributer("gradcam", bb).attribute(x, np.array([0, 1])))
    assert cam.shape == (2, 8, 8) and np.isfinite(cam).all()


# ------------------------------------------------------------------------ what cannot be converted

LAMBDA = {
    "module": "keras.layers", "class_name": "Lambda",
    "config": {"name": "double", "trainable": True, "dtype": "float32",
               "function": {"class_name": "__lambda__", "config": {
                   "code": "4wEAAAAAAAAAAAAAAAEAAAADAAAA", "defaults": None, "closure": None}},
               "module": "__main__", "function_type": "lambda", "output_shape": None,
               "output_shape_type": "raw", "output_shape_module": None, "arguments": {}},
    "registered_name": None, "build_config": {"input_shape": [None, 6, 6, 3]},
    "name": "double", "inbound_nodes": [[["input_1", 0, 0, {}]]],
}


def _config_with(entry: dict) -> dict:
    """The plain Sequential model as a functional config with ``entry`` after its input."""
    net = plain_sequential()
    net.sequential = False
    config = net.config(sample_images(net, 1))
    layers = config["config"]["layers"]
    layers.insert(1, entry)
    layers[2]["inbound_nodes"] = [[[entry["name"], 0, 0, {}]]]
    return config


def _assert_resave_message(message: str, path: Path) -> None:
    assert str(path) in message
    assert "Keras 2.14.0" in message
    assert "tf.keras.models.load_model(" in message and ".save('model.h5')" in message
    assert "Traceback" not in message


def _broken(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"{kind}.keras"
    net = plain_sequential()
    if kind == "lambda":
        return write_keras2_archive(path, net, config=_config_with(LAMBDA))
    if kind == "custom_layer":
        custom = {**LAMBDA, "module": "my_project.layers", "class_name": "Scale",
                  "registered_name": "Custom>Scale",
                  "config": {"name": "double", "trainable": True, "dtype": "float32", "factor": 2}}
        return write_keras2_archive(path, net, config=_config_with(custom))
    if kind == "unknown_option":  # an option this Keras 3 does not know
        config = net.config(sample_images(net, 1))
        config["config"]["layers"][3]["config"]["foo"] = 1
        return write_keras2_archive(path, net, config=config)
    if kind == "subclassed":
        config = {"module": "my_project.models", "class_name": "MyNet", "config": {},
                  "registered_name": "Custom>MyNet"}
        return write_keras2_archive(path, net, config=config)
    if kind == "weights_mismatch":  # one weight too few for the dense layer
        buffer = io.BytesIO()
        with h5py.File(buffer, "w") as h5:
            net.write_weights(h5)
            del h5[f"{DEPS}/dense/vars/1"]
        return write_keras2_archive(path, net, weights=buffer.getvalue())
    if kind == "wrong_shape":
        buffer = io.BytesIO()
        with h5py.File(buffer, "w") as h5:
            net.write_weights(h5)
            del h5[f"{DEPS}/conv2d/vars/0"]
            h5[f"{DEPS}/conv2d/vars/0"] = np.zeros((5, 5, 3, 2), np.float32)
        return write_keras2_archive(path, net, weights=buffer.getvalue())
    if kind == "no_weights":
        write_keras2_archive(path, net)
        with zipfile.ZipFile(path) as zf:
            keep = {n: zf.read(n) for n in ("metadata.json", "config.json")}
        with zipfile.ZipFile(path, "w") as zf:
            for n, data in keep.items():
                zf.writestr(n, data)
        return path
    if kind == "bad_json":
        write_keras2_archive(path, net)
        with zipfile.ZipFile(path) as zf:
            keep = {n: zf.read(n) for n in zf.namelist()}
        keep["config.json"] = b'{"module": "keras.src.engine.functional", "class_'
        with zipfile.ZipFile(path, "w") as zf:
            for n, data in keep.items():
                zf.writestr(n, data)
        return path
    raise AssertionError(kind)


@pytest.mark.parametrize("kind,reason", [
    ("lambda", "Lambda layer"),
    ("custom_layer", "custom layer"),
    ("subclassed", "only functional and Sequential"),
    ("unknown_option", "Unrecognized keyword arguments passed to Dense"),
    ("weights_mismatch", "2 weights in Keras 3 but 1 in the archive"),
    ("wrong_shape", "shape (3, 3, 3, 2) in Keras 3 but (5, 5, 3, 2)"),
    ("no_weights", "no model.weights.h5"),
    ("bad_json", "not valid JSON"),
])
def test_unconvertible_archive_says_how_to_resave_it(tmp_path, kind, reason):
    path = _broken(tmp_path, kind)
    with pytest.raises(ModelLoadError) as info:
        tfxai.load_model(path)
    message = str(info.value)
    _assert_resave_message(message, path)
    assert reason in message


def test_a_file_that_is_not_an_archive_gets_the_same_message(tmp_path):
    path = tmp_path / "model.keras"
    path.write_bytes(b"not a zip file")
    with pytest.raises(ModelLoadError) as info:
        legacy.load_keras2_archive(path, KERAS2)
    _assert_resave_message(str(info.value), path)
    assert "not a zip archive" in str(info.value)
