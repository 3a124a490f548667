"""Tiny Keras models shared by the attribution tests (random weights, seeded, 0..255 input)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

import tfxai
from tfxai.backend import keras

L = keras.layers


def _scaled(inp: tf.Tensor) -> tf.Tensor:
    return L.Rescaling(1.0 / 255.0)(inp)


def small_cnn(seed: int = 0, size: int = 16, classes: int = 5) -> keras.Model:
    """conv(relu fused) → maxpool → conv → Activation(relu) → avgpool → dense → dense.

    Only layers shap's eager DeepExplainer and innvestigate both handle (no batch norm)."""
    keras.utils.set_random_seed(seed)
    inp = L.Input((size, size, 3))
    x = _scaled(inp)
    x = L.Conv2D(6, 3, padding="same", activation="relu")(x)
    x = L.MaxPooling2D()(x)
    x = L.Conv2D(8, 3, padding="same")(x)
    x = L.Activation("relu", name="conv2_relu")(x)  # innvestigate names its split layers
    x = L.AveragePooling2D(2)(x)
    x = L.Flatten()(x)
    x = L.Dense(16, activation="relu")(x)
    out = L.Dense(classes)(x)
    return keras.Model(inp, out, name="small_cnn")


def zoo_cnn(seed: int = 0, size: int = 16, classes: int = 5) -> keras.Model:
    """Every layer kind of the five backbones: fused and separate ReLU, ReLU6, batch norm,
    max/avg pooling, add and concatenate merges, swish, a squeeze-and-excitation sigmoid gate
    (Multiply), global pooling, dropout, zero padding, a softmax head."""
    keras.utils.set_random_seed(seed)
    inp = L.Input((size, size, 3))
    x = _scaled(inp)
    x = L.Normalization(mean=[0.4, 0.5, 0.6], variance=[0.05, 0.06, 0.07])(x)
    x = L.Conv2D(8, 3, padding="same", activation="relu")(x)
    x = L.ZeroPadding2D(1)(x)
    x = L.MaxPooling2D(3, strides=2)(x)
    a = L.Conv2D(8, 3, padding="same")(x)
    a = L.BatchNormalization()(a)
    a = L.ReLU(max_value=6.0)(a)
    x = L.Add()([x, a])
    b = L.Conv2D(4, 1, activation="swish")(x)
    c = L.DepthwiseConv2D(3, padding="same")(x)
    c = L.Activation("relu")(c)
    x = L.Concatenate(name="merge")([x, b, c])
    se = L.GlobalAveragePooling2D(keepdims=True)(x)
    se = L.Conv2D(4, 1, activation="swish")(se)
    se = L.Conv2D(20, 1, activation="sigmoid")(se)
    x = L.Multiply()([x, se])
    x = L.AveragePooling2D(2)(x)
    x = L.Conv2D(12, 1)(x)
    x = L.BatchNormalization()(x)
    x = L.Activation("swish")(x)
    x = L.GlobalMaxPooling2D()(x)
    x = L.Dropout(0.2)(x)
    out = L.Dense(classes, activation="softmax", name="head")(x)
    model = keras.Model(inp, out, name="zoo_cnn")
    # non-trivial batch-norm statistics
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            g, bta, mu, var = layer.get_weights()
            layer.set_weights([
                rng.uniform(0.5, 1.5, g.shape), rng.normal(0, 0.1, bta.shape),
                rng.normal(0, 0.1, mu.shape), rng.uniform(0.5, 1.5, var.shape),
            ])
    return model


def backbone(model: keras.Model, output: str = "logits") -> tfxai.Backbone:
    """Wrap a tiny model (identity preprocessing: it takes 0..255 input)."""
    return tfxai.load_model(model, output=output)


def images(n: int = 3, size: int = 16, seed: int = 0) -> np.ndarray:
    """Smooth-ish random RGB images in 0..255."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(0, 255, (n, size // 4, size // 4, 3)).astype(np.float32)
    up = tf.image.resize(base, (size, size), method="bilinear").numpy()
    return np.clip(up + rng.normal(0, 20, up.shape), 0, 255).astype(np.float32)


def corr(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    return float(np.corrcoef(a, b)[0, 1])
