"""Every command that fails on usage writes nothing: no output folder, no classes.txt, no runs.jsonl.

(attribute/evaluate: tests/test_pipeline.py::test_usage_errors_exit_2 and the tests after it.)
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from tfxai.cli.main import main

from tfxai.data.synthetic import make_synthetic_dataset


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    make_synthetic_dataset(root, n_per_class=4, size=24, seed=0)
    return root


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*")) if folder.exists() else []


@pytest.mark.parametrize("args, message", [
    (["finetune", "--model", "nonet"], "nonet"),
    (["finetune", "--model", "BROKEN"], "broken.keras"),
    (["finetune", "--model", "small_cnn", "--weights", "/no/such.h5"], "/no/such.h5"),
    (["finetune", "--model", "vgg16", "--weights", "/no/such.h5"], "/no/such.h5"),
    (["roar", "--model", "nonet"], "nonet"),
    (["roar", "--model", "BROKEN", "--method", "saliency"], "broken.keras"),
])
def test_training_usage_errors_write_nothing(data, tmp_path, args, message):
    broken = tmp_path / "broken.keras"
    broken.write_text("not a model")
    out = tmp_path / "out"
    argv = [str(broken) if a == "BROKEN" else a for a in args]
    res = CliRunner().invoke(main, [*argv, "--data", str(data), "--out", str(out), "--epochs", "1"])
    assert res.exit_code == 2, res.output
    assert message in res.output
    assert not out.exists(), _files(out)


def test_finetune_still_writes_classes_and_models(data, tmp_path):
    """The check-first order keeps the outputs of a good run (classes.txt, models.csv, model)."""
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["finetune", "--data", str(data), "--out", str(out),
                                    "--epochs", "1", "--fractions", "1.0",
                                    "--optimizer", "adam"])
    assert res.exit_code == 0, res.output
    assert (out / "classes.txt").read_text().split() == ["circle", "square", "triangle"]
    assert sorted(p.name for p in out.iterdir()) == ["classes.txt", "models.csv",
                                                     "small_cnn_f1.0.keras"]


def test_merge_of_a_missing_source_writes_nothing(tmp_path):
    res = CliRunner().invoke(main, ["merge", str(tmp_path / "missing"), "--out",
                                    str(tmp_path / "dest")])
    assert res.exit_code == 2, res.output
    assert not (tmp_path / "dest").exists()


def test_unwritable_results_folder_is_found_before_the_model(tmp_path, monkeypatch):
    """A results folder that cannot be created fails fast (exit 1, before any model loads)."""
    import tfxai.pipeline.session

    monkeypatch.setattr(tfxai.pipeline.session, "load_model",
                        lambda *a, **k: (_ for _ in ()).throw(AssertionError("model loaded")))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    images = tmp_path / "imgs"
    from conftest import write_boxed_images

    images.mkdir()
    write_boxed_images(images, 1, seed=0, box=lambda rng: (1, 1, 9, 9))
    res = CliRunner().invoke(main, ["attribute", "--model", "vgg16", "--method", "saliency",
                                    "--images", str(images), "--out", str(blocker / "r")])
    assert res.exit_code == 1, res.output
    assert "cannot write" in res.output and str(blocker / "r") in res.output
