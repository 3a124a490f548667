"""SHAP adapter: equals shap's own output for the same seed; output conventions; background."""

from __future__ import annotations

import numpy as np
import pytest
import shap
import tensorflow as tf
from PIL import Image

import tfxai
from tfxai.attribution.shapley import (
    BackgroundOverlapError,
    check_background_overlap,
    normalise_gradient_output,
    synthetic_background,
)
from tfxai.backend import keras

H = 16


@pytest.fixture(scope="module")
def bb():
    keras.utils.set_random_seed(0)
    inp = keras.Input((H, H, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="c1")(inp)
    x = keras.layers.Conv2D(5, 3, activation="relu", name="c2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(3, name="out")(x)
    # a non-trivial preprocessing: the adapter must explain 0..255 input through it
    return tfxai.load_model(keras.Model(inp, out), output="logits",
                            preprocess=lambda v: tf.convert_to_tensor(v) / 127.5 - 1.0)


def _images(n=2, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, H, H, 3)).astype(np.float32)


def _rgb_model(bb):
    inp = keras.Input((H, H, 3))
    return keras.Model(inp, bb.logit_model(keras.layers.Lambda(bb.preprocess)(inp)))


def test_gradient_input_equals_shap(bb):
    images, targets, seeds = _images(), [0, 2], [7, 8]
    att = tfxai.get_attributer("shap", bb, n_samples=16, background_size=6, seed=0)
    raw = att.attribute(images, targets, seeds=seeds)
    assert raw.shape == (2, H, H, 3)
    ref_explainer = shap.GradientExplainer(_rgb_model(bb), synthetic_background(6, (H, H), 0))
    for i in range(2):
        ref = ref_explainer.shap_values(images[i : i + 1], nsamples=16, rseed=seeds[i])
        assert ref.shape == (1, H, H, 3, 3)  # shap 0.49: the class axis is last
        np.testing.assert_allclose(raw[i], ref[0, ..., targets[i]], rtol=1e-5, atol=1e-6)
    # per-image seeds: batching does not change an image's result
    np.testing.assert_array_equal(att.attribute(images[1:], [2], seeds=[8])[0], raw[1])
    # and numpy's global random state is left alone
    np.random.seed(5)  # noqa: NPY002
    a = np.random.rand()  # noqa: NPY002
    np.random.seed(5)  # noqa: NPY002
    att.attribute(images[:1], [0], seeds=[1])
    assert np.random.rand() == a  # noqa: NPY002


def test_gradient_inner_layer_equals_shap_summed_and_upsampled(bb):
    images, targets = _images(1, 3), [1]
    bg = _images(4, 9)
    att = tfxai.get_attributer("shap", bb, layer="c1", n_samples=12, background=bg)
    assert att.resolution == "layer"
    raw = att.attribute(images, targets, seeds=[3])
    assert raw.shape == (1, H, H)
    to_layer = bb.layer_model("c1")
    head = keras.Model(bb.find_layer("c1").output, bb.logit_model.outputs[0])
    acts = lambda v: to_layer(bb.preprocess(v))[0].numpy()  # noqa: E731
    ref = shap.GradientExplainer(head, acts(bg)).shap_values(acts(images), nsamples=12, rseed=3)
    ref_map = tf.image.resize(ref[0, ..., 1].sum(-1)[None, ..., None], (H, H),
                              method="bilinear")[0, ..., 0].numpy()
    np.testing.assert_allclose(raw[0], ref_map, rtol=1e-5, atol=1e-6)


def test_partition_equals_shap():
    keras.utils.set_random_seed(1)
    inp = keras.Input((H, H, 3))
    out = keras.layers.Dense(3)(keras.layers.Flatten()(inp))
    lin = tfxai.load_model(keras.Model(inp, out), output="logits")
    images = _images(1, 4)
    att = tfxai.get_attributer("shap", lin, explainer="partition", max_evals=40,
                               masker="blur(4,4)", model_batch_size=50)
    raw = att.attribute(images, [2], seeds=[9])
    f = lambda b: lin.predict_logits(np.asarray(b, np.float32), batch_size=50)  # noqa: E731
    np.random.seed(9)  # noqa: NPY002 - shap breaks ties with the global generator
    ref = shap.PartitionExplainer(f, shap.maskers.Image("blur(4,4)", (H, H, 3)))(
        images, max_evals=40, outputs=[2], silent=True, batch_size=50)
    ref = np.asarray(ref.values)[0, ..., 0]
    assert np.abs(ref).max() > 1e-2
    np.testing.assert_allclose(raw[0], ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


def test_output_conventions():
    a = np.arange(2 * 4 * 4 * 3, dtype=float).reshape(2, 4, 4, 3)
    # shap >= 0.45: class axis last, with the ranks when ranked_outputs is given
    np.testing.assert_array_equal(normalise_gradient_output(a[..., None], 4), a)
    np.testing.assert_array_equal(normalise_gradient_output((a[..., None], [[1], [1]]), 4), a)
    # older shap: a list with one array per output
    np.testing.assert_array_equal(normalise_gradient_output([a, a + 1], 4), a)
    np.testing.assert_array_equal(normalise_gradient_output(([a], [[1], [1]]), 4), a)
    # single-output model: no output axis
    np.testing.assert_array_equal(normalise_gradient_output(a, 4), a)
    with pytest.raises(ValueError, match="unexpected shap output"):
        normalise_gradient_output(a[..., None, None], 4)


def test_background_overlap_refused(bb, tmp_path):
    images = _images(3, 5)
    with pytest.raises(BackgroundOverlapError, match="background"):
        tfxai.get_attributer("shap", bb, n_samples=4, background=images[1:]).attribute(
            images[:2], [0, 0])
    # folder background: the same files evaluated are refused by content and by path/id
    folder = tmp_path / "bg"
    folder.mkdir()
    for i, img in enumerate(images):
        Image.fromarray(img.astype(np.uint8)).save(folder / f"im{i}.png")
    att = tfxai.get_attributer("shap", bb, n_samples=4, background=str(folder),
                               background_size=2)
    assert len(att.background_ids) == 2
    batch = tfxai.data.load_batch(tfxai.data.discover(folder), (H, H))
    with pytest.raises(BackgroundOverlapError):
        att.attribute(batch.images, [0, 0, 0])
    with pytest.raises(BackgroundOverlapError, match="shares"):
        att.check_background_ids([str(p) for p in sorted(folder.iterdir())])
    copy = tmp_path / "copy.png"
    copy.write_bytes((folder / "im0.png").read_bytes())
    with pytest.raises(BackgroundOverlapError):  # same bytes under another name
        check_background_overlap([folder / "im0.png"], [copy])
    check_background_overlap(["a/x1", "a/x2"], ["a/x3"])  # disjoint ids pass
    with pytest.raises(BackgroundOverlapError):
        check_background_overlap(["val/x1.JPEG"], ["val/x1"])


def test_bad_background(bb, tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        tfxai.get_attributer("shap", bb, background=str(tmp_path / "nope"))
    with pytest.raises(ValueError, match="background"):
        tfxai.get_attributer("shap", bb, background=np.zeros((2, 8, 8, 3)))
    with pytest.raises(ValueError, match="layer"):
        tfxai.get_attributer("shap", bb, explainer="partition", layer="c1")
