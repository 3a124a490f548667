"""End-to-end pipeline and CLI: attribute, resume, kill-and-resume, bad input, exit codes."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from tfxai.cli.main import main

from tfxai.results import AttributionStore, CsvTable


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


def _attribute_args(model: Path, images: Path, out: Path, *extra: str) -> list[str]:
    return ["attribute", "--model", str(model), "--method", "saliency,gradcam", "--images",
            str(images), "--annotations", str(images), "--out", str(out), "--no-progress",
            "--batch-size", "4", *extra]


def test_attribute_custom_model_and_resume(tiny_cnn_file, image_dir, tmp_path):
    out = tmp_path / "r"
    runner = CliRunner()
    res = runner.invoke(main, _attribute_args(tiny_cnn_file, image_dir, out))
    assert res.exit_code == 0, res.output
    preds = _rows(out / "predictions.csv")
    assert len(preds) == 6
    assert {p["label"] for p in preds} == {"0"}  # n01440764 from the XML
    store = AttributionStore(out / "attributions")
    items = store.items()
    assert len(items) == 12
    raw = store.load_many([i for i in items if i.method == "saliency"])
    assert raw.shape == (6, 32, 32, 3) and np.isfinite(raw).all()
    cams = store.load_many([i for i in items if i.method == "gradcam"])
    assert cams.shape == (6, 32, 32)

    res2 = runner.invoke(main, _attribute_args(tiny_cnn_file, image_dir, out))
    assert res2.exit_code == 0, res2.output
    assert "0 attributions computed, 12 reused/skipped" in res2.output
    assert len(_rows(out / "predictions.csv")) == 6
    assert len(AttributionStore(out / "attributions").items()) == 12


def test_bad_images_are_recorded_and_run_goes_on(tiny_cnn_file, image_dir, tmp_path):
    (image_dir / "empty.png").write_bytes(b"")
    (image_dir / "text.jpg").write_text("not an image")
    good = (image_dir / "img0.png").read_bytes()
    (image_dir / "trunc.png").write_bytes(good[: len(good) // 2])
    out = tmp_path / "r"
    res = CliRunner().invoke(main, _attribute_args(tiny_cnn_file, image_dir, out))
    assert res.exit_code == 1, res.output
    errors = _rows(out / "errors.csv")
    by_id = {e["image_id"]: e["error"] for e in errors}
    assert set(by_id) == {"empty", "text", "trunc"}
    assert "empty file" in by_id["empty"] and "empty.png" in by_id["empty"]
    assert "not a recognised image" in by_id["text"]
    assert "corrupt or truncated" in by_id["trunc"]
    assert len(_rows(out / "predictions.csv")) == 6


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "nosuchnet"], "unknown model 'nosuchnet'"),
        (["--method", "nosuchmethod"], "unknown method 'nosuchmethod'"),
        (["--param", "saliency.nosuch=1"], "unknown parameter(s) ['nosuch']"),
        (["--param", "gradcam.layer=nolayer"], "layer 'nolayer' not found"),
        (["--weights", "/no/such/weights.h5", "--model", "vgg16"], "/no/such/weights.h5"),
        (["--param", "steps=3"], "expected NAME.PARAM=VALUE"),
    ],
)
def test_usage_errors_exit_2(tiny_cnn_file, image_dir, tmp_path, args, message):
    base = {"--model": str(tiny_cnn_file), "--method": "saliency,gradcam"}
    pairs = dict(zip(args[::2], args[1::2], strict=True))
    params = [pairs.pop("--param")] if "--param" in pairs else []
    base.update(pairs)
    argv = ["attribute", "--images", str(image_dir), "--out", str(tmp_path / "r"), "--no-progress"]
    for k, v in base.items():
        argv += [k, v]
    for p in params:
        argv += ["--param", p]
    res = CliRunner().invoke(main, argv)
    assert res.exit_code == 2, res.output
    assert message in res.output


def test_empty_image_dir_is_usage_error(tiny_cnn_file, tmp_path):
    (tmp_path / "none").mkdir()
    res = CliRunner().invoke(main, ["attribute", "--model", str(tiny_cnn_file), "--method",
                                    "saliency", "--images", str(tmp_path / "none"), "--out",
                                    str(tmp_path / "r")])
    assert res.exit_code == 2
    assert "no images" in res.output and str(tmp_path / "none") in res.output


def test_torn_csv_line_is_repaired(tmp_path):
    table = CsvTable(tmp_path / "t.csv", ["a", "b"])
    table.append([{"a": 1, "b": 2}, {"a": 3, "b": 4}])
    with (tmp_path / "t.csv").open("a") as fh:
        fh.write("5,")  # a kill in the middle of a write
    table2 = CsvTable(tmp_path / "t.csv", ["a", "b"])
    table2.append([{"a": 6, "b": 7}])
    assert [r["a"] for r in table2.read()] == ["1", "3", "6"]


def _run_cli(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.Popen([sys.executable, "-m", "tfxai.cli.main", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _noise_images(folder: Path, n: int, seed: int) -> Path:
    """``n`` random 32×32 PNG images in ``folder``."""
    from PIL import Image

    folder.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(
            folder / f"im{i:02d}.png")
    return folder


def _wait_for_predictions(out: Path, n: int, timeout: float = 120) -> None:
    """Wait until ``predictions.csv`` in ``out`` holds at least ``n`` rows."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if (out / "predictions.csv").exists() and len(_rows(out / "predictions.csv")) >= n:
            return
        time.sleep(0.05)


@pytest.mark.slow
def test_sigkill_then_resume_has_no_duplicates(tiny_cnn_file, tmp_path):
    folder = _noise_images(tmp_path / "many", 40, seed=1)
    out = tmp_path / "r"
    args = ["attribute", "--model", str(tiny_cnn_file), "--method", "saliency,gradcam",
            "--images", str(folder), "--out", str(out), "--batch-size", "2", "--no-progress"]
    proc = _run_cli(args)
    _wait_for_predictions(out, 6)  # some batches written: then kill hard
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(_rows(out / "predictions.csv"))
    assert 0 < done_before < 40, "the kill should land mid-run"
    proc = _run_cli(args)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()
    preds = _rows(out / "predictions.csv")
    assert len(preds) == 40 and len({p["image_id"] for p in preds}) == 40
    items = AttributionStore(out / "attributions").items()
    assert len(items) == 80


@pytest.mark.slow
def test_sigint_stops_after_batch_and_says_how_to_resume(tiny_cnn_file, tmp_path):
    folder = _noise_images(tmp_path / "many", 60, seed=2)
    out = tmp_path / "r"
    args = ["attribute", "--model", str(tiny_cnn_file), "--method", "saliency",
            "--images", str(folder), "--out", str(out), "--batch-size", "2", "--no-progress"]
    proc = _run_cli(args)
    _wait_for_predictions(out, 4)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err.decode()
    assert "re-run the same command to resume" in err.decode()
    n = len(_rows(out / "predictions.csv"))
    assert n < 60 and n % 2 == 0  # stopped at a batch boundary
    assert len(AttributionStore(out / "attributions").items()) == n


def test_unwritable_output_folder(tiny_cnn_file, image_dir, tmp_path):
    if os.geteuid() == 0:
        target = Path("/proc/tfxai-results")  # not writable even for root
    else:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        target = ro / "r"
    res = CliRunner().invoke(main, _attribute_args(tiny_cnn_file, image_dir, target))
    assert res.exit_code in (1, 2), res.output
    assert "cannot write" in res.output and str(target) in res.output
