"""Keras 3 as users have it: saved .keras/.h5 files, the nested transfer-learning model, models
without conv layers, Keras 2 files, SavedModel folders and a non-TensorFlow backend, through the
CLI (`tfxai attribute`) and the Python API."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from tfxai.cli.main import main

import tfxai
from tfxai.backend import keras
from tfxai.results import AttributionStore

L = keras.layers
GRADIENT_METHODS = "gradcam,saliency,integrated_gradients,deeplift,guided_backprop"


def _attribute(model: str | Path, images: Path, out: Path, methods: str = GRADIENT_METHODS,
               *extra: str):
    args = ["attribute", "--model", str(model), "--method", methods, "--images", str(images),
            "--annotations", str(images), "--out", str(out), "--no-progress", "--batch-size", "2",
            *extra]
    if "integrated_gradients" in methods:
        args += ["--param", "integrated_gradients.steps=8"]
    return CliRunner().invoke(main, args)


def _check_run(out: Path, n_images: int, methods: str) -> dict[str, np.ndarray]:
    with (out / "predictions.csv").open() as fh:
        assert len(list(csv.DictReader(fh))) == n_images
    store = AttributionStore(out / "attributions")
    items = store.items()
    got = {}
    for method in methods.split(","):
        mine = [i for i in items if i.method == method]
        assert len(mine) == n_images, method
        raw = store.load_many(mine)
        assert np.isfinite(raw).all(), method
        got[method] = raw
    return got


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """Two 60×50 PNGs with VOC boxes (resized by the CLI to the model's input size)."""
    from conftest import write_boxed_images

    folder = tmp_path_factory.mktemp("photos")
    return write_boxed_images(folder, 2, seed=3, box=lambda rng: (5, 5, 40, 30), size=(60, 50))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sequential", "functional"])
def test_nested_efficientnet_transfer_model_runs_every_gradient_method(kind, photos, tmp_path):
    """The issue's transfer-learning model, saved by Keras 3 as .keras: no layer option, no input
    size (it accepts any size; the nested EfficientNetB0 says 224), every gradient method."""
    keras.utils.set_random_seed(0)
    base = keras.applications.EfficientNetB0(include_top=False, weights=None)
    if kind == "sequential":
        model = keras.Sequential([base, L.GlobalAveragePooling2D(), L.Dense(5)])
    else:
        inp = keras.Input((None, None, 3))
        model = keras.Model(inp, L.Dense(5)(L.GlobalAveragePooling2D()(base(inp))))
    path = tmp_path / f"{kind}.keras"
    model.save(path)
    res = _attribute(path, photos, tmp_path / "out", GRADIENT_METHODS, "--output", "logits")
    assert res.exit_code == 0, res.output
    raw = _check_run(tmp_path / "out", 2, GRADIENT_METHODS)
    assert raw["gradcam"].shape == (2, 224, 224)
    assert raw["saliency"].shape == (2, 224, 224, 3)
    bb = tfxai.load_model(path, output="logits")
    assert bb.last_conv_layer == "efficientnetb0/top_activation" and bb.input_size == (224, 224)
    # the CLI's Grad-CAM is the API's on the same model (the inner layer found by itself)
    assert np.abs(raw["gradcam"]).max() > 0 or np.abs(raw["saliency"]).max() > 0


def _small_nested(seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    base_in = keras.Input((32, 32, 3))
    x = L.Rescaling(1 / 255)(base_in)
    x = L.Conv2D(6, 3, activation="relu", name="conv_a")(x)
    x = L.MaxPooling2D(2)(x)
    x = L.Conv2D(8, 3, activation="relu", name="conv_b")(x)
    base = keras.Model(base_in, x, name="features")
    return keras.Sequential([keras.Input((32, 32, 3)), base, L.GlobalAveragePooling2D(),
                             L.Dense(4, activation="softmax", name="head")], name="transfer")


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_saved_keras3_nested_model_through_the_cli(suffix, photos, tmp_path):
    model = _small_nested()
    path = tmp_path / f"nested{suffix}"
    model.save(path)
    res = _attribute(path, photos, tmp_path / "out")
    assert res.exit_code == 0, res.output
    raw = _check_run(tmp_path / "out", 2, GRADIENT_METHODS)
    # the stored Grad-CAM is the API's, at the inner last conv layer found by itself
    bb = tfxai.load_model(path)
    assert bb.last_conv_layer == "features/conv_b"
    from tfxai.data import discover, load_batch

    samples = discover(photos, annotations=photos)
    images = load_batch(samples, bb.input_size, "squash").images
    targets = bb.predict(images).argmax(axis=1)
    want = tfxai.get_attributer("gradcam", bb).attribute(images, targets)
    np.testing.assert_allclose(raw["gradcam"], want, rtol=1e-5, atol=1e-7)
    # DeepLIFT sums to the logit difference against the black reference on the nested model
    dl = raw["deeplift"].reshape(2, -1).sum(axis=1)
    z = bb.predict_logits(images)[np.arange(2), targets]
    z0 = bb.predict_logits(np.zeros_like(images))[np.arange(2), targets]
    np.testing.assert_allclose(dl, z - z0, rtol=1e-3, atol=1e-5)
    # the inner layer can be named by path or by its bare name
    for name in ("features/conv_a", "conv_a"):
        res = _attribute(path, photos, tmp_path / name.replace("/", "_"), "gradcam",
                         "--last-conv-layer", name)
        assert res.exit_code == 0, res.output


def _mlp() -> keras.Model:
    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 3))
    x = L.Dense(8, activation="relu")(L.Flatten()(L.Rescaling(1 / 255)(inp)))
    return keras.Model(inp, L.Dense(3, activation="softmax")(x), name="mlp")


def test_model_without_conv_layers(photos, tmp_path):
    path = tmp_path / "mlp.keras"
    _mlp().save(path)
    res = _attribute(path, photos, tmp_path / "ok", "saliency,integrated_gradients")
    assert res.exit_code == 0, res.output
    _check_run(tmp_path / "ok", 2, "saliency,integrated_gradients")
    res = _attribute(path, photos, tmp_path / "cam", "gradcam")
    assert res.exit_code == 2, res.output
    assert "no layer with a 4-D" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "cam" / "attributions").exists() or not AttributionStore(
        tmp_path / "cam" / "attributions").items()


def test_savedmodel_folder_and_keras2_archive_are_clear_errors(photos, tmp_path):
    folder = tmp_path / "exported"
    folder.mkdir()
    (folder / "saved_model.pb").write_bytes(b"\x08\x01")
    res = _attribute(folder, photos, tmp_path / "a", "saliency")
    assert res.exit_code == 2 and "SavedModel" in res.output and str(folder) in res.output
    assert ".keras" in res.output  # the way out
    bogus = tmp_path / "old.keras"  # a Keras 2 archive the converter cannot read
    import zipfile

    with zipfile.ZipFile(bogus, "w") as z:
        z.writestr("metadata.json", '{"keras_version": "2.14.0"}')
        z.writestr("config.json", "{not json")
    res = _attribute(bogus, photos, tmp_path / "b", "saliency")
    assert res.exit_code == 2, res.output
    assert "old.keras" in res.output and "2.14.0" in res.output and ".h5" in res.output
    assert "Traceback" not in res.output


def test_subclassed_model_is_refused_with_the_way_out():
    class Net(keras.Model):
        def __init__(self):
            super().__init__(name="my_net")
            self.conv = L.Conv2D(3, 3)
            self.pool = L.GlobalAveragePooling2D()
            self.head = L.Dense(2, activation="softmax")

        def call(self, x):
            return self.head(self.pool(self.conv(x)))

    net = Net()
    net(np.zeros((1, 8, 8, 3), np.float32))
    with pytest.raises(tfxai.models.ModelLoadError, match="my_net.*subclassed.*functional"):
        tfxai.load_model(net, input_size=(8, 8))


def test_other_keras_backend_is_a_clear_usage_error(tmp_path):
    """KERAS_BACKEND=jax: the library refuses to import, the CLI exits 2 with the fix."""
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    code = "import tfxai.backend"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode != 0 and "KERAS_BACKEND=tensorflow" in proc.stderr
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from tfxai.cli.main import entry; sys.argv = "
         "['tfxai', 'models']; entry()"], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "Keras backend is 'jax'" in proc.stderr and "Traceback" not in proc.stderr


# ------------------------------------------------------------------ batch norm as Keras 2 ran it


def _bn_models():
    from _tiny_models import zoo_cnn

    L = keras.layers
    keras.utils.set_random_seed(1)
    inp = L.Input((4, 4, 3))
    x = L.BatchNormalization()(L.Dense(6)(L.Flatten()(inp)))  # 2-D input: not the fused kernel
    mlp = keras.Model(inp, L.Dense(3)(x))
    bn = mlp.layers[3]
    bn.set_weights([np.full(6, 1.3), np.full(6, 0.2), np.linspace(-1, 1, 6), np.full(6, 0.7)])
    return zoo_cnn(), mlp


def test_batch_norm_runs_as_one_fused_kernel_with_the_same_numbers():
    import tensorflow as tf

    from tfxai.graph import InferenceBatchNorm
    from tfxai.models import logits_graph

    cnn, mlp = _bn_models()
    bb = tfxai.load_model(cnn)
    fused = [lay for lay in bb.logit_model.layers if isinstance(lay, InferenceBatchNorm)]
    assert len(fused) == 2  # both batch norms of zoo_cnn
    # the flat graph still names the user's layers
    assert [n.source for n in bb.graph.nodes if isinstance(n.layer, InferenceBatchNorm)] == [
        f.inner for f in fused]
    x = tf.constant(np.random.default_rng(0).uniform(0, 255, (4, 16, 16, 3)), tf.float32)
    g, out = logits_graph(cnn, bb.input_shape, "probabilities", fused_batchnorm=False)
    plain = g.model(out)  # Keras 3's own batch-norm layers
    assert not any(isinstance(lay, InferenceBatchNorm) for lay in plain.layers)
    keras_logits = plain(bb.preprocess(x)).numpy()
    np.testing.assert_allclose(bb.logits(x).numpy(), keras_logits, rtol=1e-5, atol=1e-5)
    # gradients too, through the fused kernel's gradient
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        a = tf.reduce_sum(bb.logits(x)[:, 1])
        b = tf.reduce_sum(plain(bb.preprocess(x))[:, 1])
    ga, gb = tape.gradient(a, x).numpy(), tape.gradient(b, x).numpy()
    assert np.abs(ga).max() > 0
    np.testing.assert_allclose(ga, gb, rtol=1e-4, atol=1e-6 * np.abs(gb).max())
    # the weights are read at call time: changing them changes tfxai's logits
    fused[0].inner.moving_mean.assign(fused[0].inner.moving_mean + 1.0)
    assert not np.allclose(bb.logits(x).numpy(), keras_logits, atol=1e-3)
    # a batch norm on a 2-D input runs the Keras layer itself
    bm = tfxai.load_model(mlp, output="logits")
    v = np.random.default_rng(1).normal(size=(5, 4, 4, 3)).astype(np.float32)
    np.testing.assert_allclose(bm.logit_model(v).numpy(), mlp(v, training=False).numpy(),
                               rtol=1e-6, atol=1e-6)
