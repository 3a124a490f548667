"""Fine-tuning families, ROAR masking and the ROAR loop, and the finetune/roar/synth commands."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import tfxai
from tfxai import training as T
from tfxai.data.synthetic import make_synthetic_dataset


def _train_cmds():
    try:
        return importlib.import_module("tfxai.cli.train_cmds")
    except ImportError:  # the cli package is mapped into tfxai by the install
        path = Path(__file__).resolve().parents[1] / "cli" / "train_cmds.py"
        spec = importlib.util.spec_from_file_location("train_cmds", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    """3 classes × 10 images of 24×24 (train 8, test 2 per class)."""
    root = tmp_path_factory.mktemp("tiny")
    make_synthetic_dataset(root, n_per_class=10, size=24, seed=0)
    return root


@pytest.fixture(scope="module")
def family(tmp_path_factory):
    """small_cnn fine-tuned on 10% and 100% of 3 × 160 synthetic 32×32 training images.

    With these settings the 100% model reaches 0.97-1.0 test accuracy and the 10% model 0.31-0.40
    for seeds 0-3 (checked when the test was written), so the margins below are robust.
    """
    root = tmp_path_factory.mktemp("family")
    make_synthetic_dataset(root / "data", n_per_class=200, size=32, seed=0)
    table = T.finetune(
        "small_cnn", root / "data", fractions=(0.1, 1.0), out_dir=root / "models", epochs=20,
        lr=3e-3, lr_after=3e-4, lr_drop_epoch=15, optimizer="adam", seed=0, progress=False,
    )
    return root, table


# ----------------------------------------------------------------------------------- masking


def test_roar_mask_exact_pixels_channel_sum_and_fill():
    images = np.arange(2 * 2 * 3 * 3, dtype=np.float32).reshape(2, 2, 3, 3)
    att = np.zeros((2, 2, 3, 3), np.float32)
    # image 0: Σ_c|a| ranks pixel (1,2) > (0,0) > (0,1); the signed sum would rank (0,1) first
    att[0, 1, 2] = [3, -3, 0]
    att[0, 0, 0] = [0, 0, -5]
    att[0, 0, 1] = [2, 2, 0]
    att[1] = np.arange(6, dtype=np.float32).reshape(2, 3)[..., None]  # pixel (1,2) highest
    fill = np.array([-1.0, -2.0, -3.0], np.float32)
    out = T.roar_mask(images, att, 0.5, fill)  # round(0.5·6) = 3 pixels per image
    changed = np.all(out == fill, axis=-1)
    np.testing.assert_array_equal(changed[0], [[True, True, False], [False, False, True]])
    np.testing.assert_array_equal(changed[1], [[False, False, False], [True, True, True]])
    np.testing.assert_array_equal(out[~changed], images[~changed])
    assert out.dtype == np.float32 and images[0, 0, 0, 0] == 0  # input untouched


def test_roar_mask_ties_go_to_the_lowest_index_and_counts_are_exact():
    images = np.ones((1, 4, 4, 3), np.float32)
    ties = np.zeros((1, 4, 4), np.float32)
    ties[0, 3, 3] = 1.0
    mask = T.top_pixel_mask(ties, 0.25)  # 4 pixels: the top one, then the 3 first ties
    np.testing.assert_array_equal(np.flatnonzero(mask), [0, 1, 2, 15])
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (5, 7, 9, 3)).astype(np.float32)
    att = np.round(rng.normal(size=(5, 7, 9, 3)), 1)  # many ties in Σ|a|
    fill = images.mean(axis=(0, 1, 2))
    for fraction in (0.0, 0.1, 0.3, 0.5, 0.9, 1.0):
        out = T.roar_mask(images, att, fraction, fill)
        n_changed = np.all(out == fill, axis=-1).sum(axis=(1, 2))
        np.testing.assert_array_equal(n_changed, round(fraction * 63))
        # the kept pixels never score above a removed one
        scores = np.abs(att).sum(-1).reshape(5, -1)
        removed = np.all(out == fill, axis=-1).reshape(5, -1)
        for s, r in zip(scores, removed, strict=True):
            if 0 < r.sum() < r.size:
                assert s[r].min() >= s[~r].max()


def test_roar_mask_rejects_bad_input():
    x = np.zeros((1, 4, 4, 3), np.float32)
    with pytest.raises(ValueError, match="fraction"):
        T.roar_mask(x, np.zeros((1, 4, 4)), 1.5, 0.0)
    with pytest.raises(ValueError, match="NaN"):
        T.roar_mask(x, np.full((1, 4, 4), np.nan), 0.5, 0.0)
    with pytest.raises(ValueError, match="match"):
        T.roar_mask(x, np.zeros((1, 5, 4)), 0.5, 0.0)


# ----------------------------------------------------------------------------------- splits


def test_stratified_split_and_nested_subsets():
    labels = np.repeat([0, 1, 2], [10, 20, 5])
    tr, te = T.stratified_split(labels, 0.2, seed=1)
    assert np.bincount(labels[te]).tolist() == [2, 4, 1]
    assert sorted(np.concatenate([tr, te]).tolist()) == list(range(35))
    np.testing.assert_array_equal(te, T.stratified_split(labels, 0.2, seed=1)[1])
    small, big = T.stratified_subset(labels, 0.2, 3), T.stratified_subset(labels, 0.6, 3)
    assert np.bincount(labels[small]).tolist() == [2, 4, 1]
    assert np.bincount(labels[big]).tolist() == [6, 12, 3]
    assert set(small) <= set(big)
    with pytest.raises(ValueError, match="fraction"):
        T.stratified_subset(labels, 0.0)


def test_folder_without_split_is_split_80_20(tmp_path):
    make_synthetic_dataset(tmp_path, n_per_class=10, size=24, split=False)
    data = T.load_image_folder(tmp_path, progress=False)
    assert data.split == "stratified" and data.classes == ["circle", "square", "triangle"]
    assert np.bincount(data.y_test).tolist() == [2, 2, 2]
    assert data.x_train.shape == (24, 24, 24, 3) and data.x_train.max() <= 255


def test_macro_f1_and_schedule():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 4, 50), rng.integers(0, 4, 50)
    assert T.macro_f1(y, p, 4) == pytest.approx(f1_score(y, p, average="macro"))
    config = T.TrainConfig(epochs=15, lr=1e-3, lr_after=1e-4, lr_drop_epoch=7)
    assert [config.learning_rate(e) for e in (0, 6, 7, 14)] == [1e-3, 1e-3, 1e-4, 1e-4]
    with pytest.raises(ValueError, match="optimizer"):
        T.TrainConfig(optimizer="rmsprop")


# ----------------------------------------------------------------------------------- finetune


def test_finetune_one_epoch_writes_loadable_models(tiny_data, tmp_path):
    table = T.finetune("small_cnn", tiny_data, fractions=(0.5, 1.0), out_dir=tmp_path, epochs=1,
                       seed=0, progress=False)
    assert list(table.columns) == list(T.MODELS_CSV_COLUMNS)
    assert table["model"].tolist() == ["small_cnn_f0.5", "small_cnn_f1.0"]
    assert table["n_train"].tolist() == [12, 24] and set(table["n_test"]) == {6}
    bb = tfxai.load_model(tmp_path / "small_cnn_f0.5.keras")
    assert bb.name == "small_cnn_f0.5" and bb.num_classes == 3 and bb.input_size == (24, 24)
    probs = bb.predict(np.full((2, 24, 24, 3), 128.0, np.float32))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    att = tfxai.get_attributer("saliency", bb).attribute(np.full((1, 24, 24, 3), 99.0, np.float32))
    assert att.shape == (1, 24, 24, 3) and np.isfinite(att).all()
    # a second family in the same folder keeps the first one's rows
    T.finetune("small_cnn", tiny_data, fractions=(0.5,), out_dir=tmp_path, epochs=1, seed=1,
               progress=False)
    csv = pd.read_csv(tmp_path / "models.csv")
    assert csv["model"].tolist() == ["small_cnn_f1.0", "small_cnn_f0.5"]
    assert csv.set_index("model").loc["small_cnn_f0.5", "seed"] == 1


def test_family_accuracy_rises_with_fraction_and_csv_matches_saved_models(family):
    root, table = family
    csv = pd.read_csv(root / "models" / "models.csv")
    assert list(csv.columns) == list(T.MODELS_CSV_COLUMNS)
    assert csv["fraction"].tolist() == [0.1, 1.0]
    assert csv["n_train"].tolist() == [48, 480]
    low, high = csv["accuracy"].tolist()
    assert high >= 0.85
    assert high >= low + 0.3
    data = T.load_image_folder(root / "data", progress=False)
    for row in csv.itertuples():
        bb = tfxai.load_model(root / "models" / row.file)
        pred = bb.predict(data.x_test).argmax(axis=1)
        assert np.mean(pred == data.y_test) == pytest.approx(row.accuracy)
        assert T.macro_f1(data.y_test, pred, 3) == pytest.approx(row.macro_f1)
    assert (root / "models" / "classes.txt").read_text().split() == ["circle", "square", "triangle"]


# ----------------------------------------------------------------------------------- ROAR loop


def test_roar_masks_train_and_test_with_the_training_mean(tiny_data, tmp_path, monkeypatch):
    calls = []

    def fake_retrain(model, data, x_train, x_test, config, seed, weights):
        calls.append((x_train, x_test, seed))
        return 0.5

    import tfxai.training.retrain as retrain

    monkeypatch.setattr(retrain, "_retrain_accuracy", fake_retrain)
    table = T.roar("small_cnn", tiny_data, methods=("saliency",), fractions=(0.25, 0.5), seeds=2,
                   epochs=1, out_dir=tmp_path, seed=0, progress=False)
    data = T.load_image_folder(tiny_data, progress=False)
    fill = data.x_train.astype(np.float64).mean(axis=(0, 1, 2)).astype(np.float32)
    assert len(calls) == 2 + 2 * 2 * 2  # clean per seed + (saliency, random) × fractions × seeds
    np.testing.assert_array_equal(calls[0][0], data.x_train)  # fraction 0: unmodified
    for x_train, x_test, _ in calls[2:]:
        for x, orig in ((x_train, data.x_train), (x_test, data.x_test)):
            removed = np.all(x == fill, axis=-1)
            n = removed.sum(axis=(1, 2))
            assert set(n.tolist()) <= {round(0.25 * 576), round(0.5 * 576)}
            assert len(set(n.tolist())) == 1
            np.testing.assert_array_equal(x[~removed], orig[~removed])
    assert len(table) == 2 * 2 + 2 * 2 * 2  # fraction-0 rows for both methods
    assert set(table["method"]) == {"saliency", "random"}
    assert sorted(table["seed"].unique().tolist()) == [1, 2]
    # resuming does no new training
    calls.clear()
    again = T.roar("small_cnn", tiny_data, methods=("saliency",), fractions=(0.25, 0.5), seeds=2,
                   epochs=1, out_dir=tmp_path, seed=0, progress=False)
    assert calls == []
    assert len(again) == len(table)


# ----------------------------------------------------------------------------------- CLI


def test_cli_synth_finetune_roar(tmp_path):
    from click.testing import CliRunner

    cmds = _train_cmds()
    runner = CliRunner()
    res = runner.invoke(cmds.synth, ["--out", str(tmp_path / "d"), "--n-per-class", "5",
                                     "--size", "24", "--seed", "2"])
    assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "d" / "train").rglob("*.png"))) == 12
    res = runner.invoke(cmds.finetune, ["--model", "small_cnn", "--data", str(tmp_path / "d"),
                                        "--fractions", "0.5,1", "--epochs", "1",
                                        "--out", str(tmp_path / "m")])
    assert res.exit_code == 0, res.output
    assert pd.read_csv(tmp_path / "m" / "models.csv")["file"].tolist() == [
        "small_cnn_f0.5.keras", "small_cnn_f1.0.keras"]
    res = runner.invoke(cmds.roar, ["--model", "small_cnn", "--method", "saliency", "--data",
                                    str(tmp_path / "d"), "--fractions", "0.5", "--seeds", "1",
                                    "--epochs", "1", "--out", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    roar = pd.read_csv(tmp_path / "r" / "roar.csv")
    assert list(roar.columns) == ["method", "fraction", "seed", "accuracy"]
    assert sorted(zip(roar["method"], roar["fraction"], strict=True)) == [
        ("random", 0.0), ("random", 0.5), ("saliency", 0.0), ("saliency", 0.5)]


@pytest.mark.parametrize(
    "args, message",
    [
        (["finetune", "--data", "/nonexistent/dir"], "does not exist"),
        (["finetune", "--data", "DATA", "--fractions", "0.5,1.5"], "outside (0, 1]"),
        (["finetune", "--data", "DATA", "--fractions", "0"], "outside (0, 1]"),
        (["finetune", "--data", "DATA", "--model", "nonet"], "nonet"),
        (["roar", "--data", "DATA", "--method", "nomethod"], "unknown method"),
        (["roar", "--data", "DATA", "--fractions", "x"], "not a number"),
        (["synth", "--out", "OUT", "--classes", "circle,blob"], "unknown shape"),
    ],
)
def test_cli_usage_errors_exit_2(args, message, tiny_data, tmp_path):
    from click.testing import CliRunner

    cmds = _train_cmds()
    command = getattr(cmds, args[0])
    argv = [str(tiny_data) if a == "DATA" else str(tmp_path / "o") if a == "OUT" else a for a in args[1:]]
    res = CliRunner().invoke(command, argv)
    assert res.exit_code == 2, res.output
    assert message in res.output


def _nested_transfer_file(path: Path) -> Path:
    """A saved Keras 3 transfer-learning model: a functional base nested in a Sequential."""
    from tfxai.backend import keras

    keras.utils.set_random_seed(0)
    base_in = keras.Input((24, 24, 3))
    x = keras.layers.Rescaling(1 / 255)(base_in)
    x = keras.layers.Conv2D(6, 3, activation="relu", name="b_conv")(x)
    base = keras.Model(base_in, x, name="base")
    model = keras.Sequential([keras.Input((24, 24, 3)), base,
                              keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(4, activation="softmax")])
    model.save(path)
    return path


@pytest.mark.parametrize("source", ["efficientnetb0", "saved"])
def test_cli_finetune_keras3_backbone_and_saved_model(source, tiny_data, tmp_path):
    """`tfxai finetune` puts a new head on a registered Keras application (random weights) and on
    a saved nested model; the written .keras file loads back and Grad-CAM finds its conv layer."""
    from click.testing import CliRunner

    model = source if source != "saved" else str(_nested_transfer_file(tmp_path / "base.keras"))
    args = ["--model", model, "--data", str(tiny_data), "--fractions", "1", "--epochs", "1",
            "--batch-size", "8", "--out", str(tmp_path / "m"), "--input-size", "64"]
    if source != "saved":
        args += ["--weights", "none"]
    res = CliRunner().invoke(_train_cmds().finetune, args)
    assert res.exit_code == 0, res.output
    table = pd.read_csv(tmp_path / "m" / "models.csv")
    assert len(table) == 1 and 0.0 <= table["accuracy"].iloc[0] <= 1.0
    bb = tfxai.load_model(tmp_path / "m" / table["file"].iloc[0])
    assert bb.input_size == (64, 64) and bb.num_classes == 3
    assert bb.last_conv_layer == ("top_activation" if source != "saved" else "b_conv")
    x = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
    cam = tfxai.get_attributer("gradcam", bb).attribute(x, [0, 1])
    assert cam.shape == (2, 64, 64) and np.isfinite(cam).all()
