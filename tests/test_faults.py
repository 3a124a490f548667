"""Faults: SIGKILL at a random moment then resume, SIGINT in evaluate, a full disk mid-run, a torn
multi-row append, an unwritable output folder. Each time the output must be complete, equal to an
uninterrupted run, and free of duplicate or torn rows."""

from __future__ import annotations

import csv
import errno
import math
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

from tfxai.results import (
    CURVES_COLUMNS,
    PREDICTION_KEY,
    SCORE_KEY,
    SCORES_COLUMNS,
    AttributionStore,
    ResultsWriteError,
)
from tfxai.run import RunConfig, run_evaluate

N_IMAGES = 24
METHODS = "gradcam,saliency"
METRICS = "iou,box_iou,deletion"
ROWS_PER_IMAGE = 2 * 4  # 2 methods × (iou, box_iou "", box_iou "hit", deletion)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    from conftest import write_boxed_images

    return write_boxed_images(tmp_path_factory.mktemp("fault_images"), N_IMAGES, seed=11,
                              box=lambda rng: (4, 6, 20, 24), stem="f{i:02d}")


def _args(model: Path, images: Path, out: Path) -> list[str]:
    return ["evaluate", "--model", str(model), "--method", METHODS, "--metric", METRICS,
            "--images", str(images), "--annotations", str(images), "--out", str(out),
            "--batch-size", "2", "--param", "deletion.steps=4", "--no-progress"]


def _cfg(model: Path, images: Path, out: Path) -> RunConfig:
    return RunConfig(models=[str(model)], methods=METHODS.split(","), metrics=METRICS.split(","),
                     images=images, annotations=images, out=out, batch_size=2, progress=False,
                     metric_params={"deletion": {"steps": 4}})


@pytest.fixture(scope="module")
def reference(tiny_cnn_file, images, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("ref") / "r"
    summary = run_evaluate(_cfg(tiny_cnn_file, images, out))
    assert summary.errors == 0
    return _read_results(out)


def _read_csv_strict(path: Path, columns: list[str]) -> list[dict[str, str]]:
    """Rows of a results CSV; fails on a torn or malformed line."""
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n"), f"{path.name}: torn last line"
    rows = list(csv.reader(text.splitlines()))
    assert rows[0] == columns, f"{path.name}: bad header"
    assert all(len(r) == len(columns) for r in rows[1:]), f"{path.name}: malformed row"
    return [dict(zip(columns, r, strict=True)) for r in rows[1:]]


def _read_results(out: Path) -> dict:
    """Scores, predictions, curves and attributions of a folder, asserting no duplicates."""
    scores = _read_csv_strict(out / "scores.csv", SCORES_COLUMNS)
    keyed = {tuple(r[c] for c in (*SCORE_KEY, "variant")): r for r in scores}
    assert len(keyed) == len(scores), "duplicate score rows"
    for r in scores:
        float(r["value"])  # parses (nan allowed)
    preds = list(csv.DictReader((out / "predictions.csv").open()))
    pkeys = {tuple(r[c] for c in PREDICTION_KEY) for r in preds}
    assert len(pkeys) == len(preds), "duplicate prediction rows"
    curves = _read_csv_strict(out / "curves.csv", CURVES_COLUMNS)
    ckeys = {tuple(r[c] for c in (*SCORE_KEY, "variant", "x")): r["y"] for r in curves}
    assert len(ckeys) == len(curves), "duplicate curve points"
    store = AttributionStore(out / "attributions")
    assert not list((out / "attributions").rglob("*.tmp")), "temporary part left behind"
    index = store.index()
    arrays = {k: store.load(item) for k, item in index.items()}
    return {"scores": {k: float(r["value"]) for k, r in keyed.items()},
            "preds": {tuple(r[c] for c in PREDICTION_KEY): r["predicted"] for r in preds},
            "curves": ckeys, "attributions": arrays}


def _assert_equal(res: dict, ref: dict) -> None:
    assert res["scores"].keys() == ref["scores"].keys()
    assert len(ref["scores"]) == N_IMAGES * ROWS_PER_IMAGE
    for k, v in ref["scores"].items():
        w = res["scores"][k]
        assert (math.isnan(v) and math.isnan(w)) or w == pytest.approx(v, rel=1e-5, abs=1e-7), k
    assert res["preds"] == ref["preds"] and len(res["preds"]) == N_IMAGES
    assert res["curves"].keys() == ref["curves"].keys() and len(res["curves"]) > 0
    assert res["attributions"].keys() == ref["attributions"].keys()
    for k, a in ref["attributions"].items():
        np.testing.assert_allclose(res["attributions"][k], a, rtol=1e-4, atol=1e-6)


def _spawn(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.Popen([sys.executable, "-m", "tfxai.cli.main", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _count_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except OSError:
        return 0


# --------------------------------------------------------------------------------------- SIGKILL


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sigkill_at_random_point_then_resume(tiny_cnn_file, images, reference, tmp_path, seed):
    rng = np.random.default_rng(seed)
    total = N_IMAGES * ROWS_PER_IMAGE
    # kill once a random number of score rows is written, plus a random delay: lands anywhere
    # in a batch (predicting, attributing, writing a part, appending rows). Batches of 1 image
    # make the run long enough; if the run still ends first, try again with an earlier point.
    threshold = int(rng.integers(1, total * 2 // 3))
    for attempt in range(3):
        out = tmp_path / f"r{attempt}"
        proc = _spawn([*_args(tiny_cnn_file, images, out), "--batch-size", "1"])
        deadline = time.time() + 180
        while time.time() < deadline and proc.poll() is None:
            if _count_lines(out / "scores.csv") > threshold:
                break
            time.sleep(0.005)
        time.sleep(float(rng.uniform(0, 0.05)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if proc.returncode == -signal.SIGKILL and _count_lines(out / "scores.csv") - 1 < total:
            break
        threshold //= 3
    else:
        pytest.fail("the run finished before the kill three times")
    rows_before = _count_lines(out / "scores.csv") - 1
    assert 0 <= rows_before < total
    summary = run_evaluate(_cfg(tiny_cnn_file, images, out))  # resume in-process
    assert not summary.interrupted and summary.errors == 0
    assert summary.rows == N_IMAGES * ROWS_PER_IMAGE - rows_before
    _assert_equal(_read_results(out), reference)


def test_torn_multirow_append_is_completed(tiny_cnn_file, images, reference, tmp_path):
    """A kill can cut one big append at a page boundary: the complete rows of a partial batch
    stay, the torn line is cut, and the resume writes exactly the missing variants."""
    out = tmp_path / "r"
    run_evaluate(_cfg(tiny_cnn_file, images, out))
    path = out / "scores.csv"
    data = path.read_bytes()
    lines = data.splitlines(keepends=True)
    # keep the header, 37 complete rows (two batches of 16, then gradcam's iou for 2 images
    # and box_iou "", "hit" of the first image and "" of the second: its "hit" row is missing)
    # and half of the next row
    assert [r.split(b",")[0] for r in lines[37:39]] == [b"f05", b"f05"]  # "", "hit"
    cut = sum(len(x) for x in lines[:38]) + len(lines[38]) // 2
    path.write_bytes(data[:cut])
    curves = out / "curves.csv"
    cdata = curves.read_bytes()
    curves.write_bytes(cdata[: len(cdata) * 2 // 3])  # curve points whose scores remain
    summary = run_evaluate(_cfg(tiny_cnn_file, images, out))
    assert summary.rows == N_IMAGES * ROWS_PER_IMAGE - 37
    _assert_equal(_read_results(out), reference)


# --------------------------------------------------------------------------------------- SIGINT


@pytest.mark.slow
def test_sigint_in_evaluate_stops_after_batch(tiny_cnn_file, images, reference, tmp_path):
    out = tmp_path / "r"
    proc = _spawn(_args(tiny_cnn_file, images, out))
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None:
        if _count_lines(out / "scores.csv") > 2 * ROWS_PER_IMAGE:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    err = err.decode()
    assert proc.returncode == 130, err
    assert "stopping after the current batch" in err
    assert "re-run the same command to resume" in err
    rows = _count_lines(out / "scores.csv") - 1
    assert 0 < rows < N_IMAGES * ROWS_PER_IMAGE
    assert rows % (2 * ROWS_PER_IMAGE) == 0, "not stopped at a batch boundary"
    summary = run_evaluate(_cfg(tiny_cnn_file, images, out))
    assert summary.rows == N_IMAGES * ROWS_PER_IMAGE - rows
    _assert_equal(_read_results(out), reference)


# --------------------------------------------------------------------------------------- disk


def _inside(fd: int, folder: Path) -> bool:
    try:
        return os.readlink(f"/proc/self/fd/{fd}").startswith(str(folder))
    except OSError:
        return False


@pytest.mark.parametrize("fail_at", ["csv", "h5"])
def test_full_disk_midrun_is_clear_and_corrupts_nothing(tiny_cnn_file, images, reference,
                                                         tmp_path, monkeypatch, fail_at):
    out = tmp_path / "r"
    real_write = os.write
    calls = {"n": 0}

    def full_disk_write(fd, data):
        if _inside(fd, out):
            calls["n"] += 1
            if fail_at == "csv" and calls["n"] > 9:
                # a short write first (part of the batch lands), then ENOSPC
                real_write(fd, bytes(data)[: max(1, len(data) // 3)])
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    import h5py

    real_file = h5py.File
    parts = {"n": 0}

    def full_disk_h5(name, mode="r", *a, **kw):
        if mode == "w" and str(name).startswith(str(out)):
            parts["n"] += 1
            if fail_at == "h5" and parts["n"] > 5:
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_file(name, mode, *a, **kw)

    monkeypatch.setattr(os, "write", full_disk_write)
    monkeypatch.setattr(h5py, "File", full_disk_h5)
    res = CliRunner().invoke(main, _args(tiny_cnn_file, images, out))
    assert res.exit_code == 1, res.output
    assert "the disk is full" in res.output and "re-run the same command" in res.output
    assert isinstance(res.exception, SystemExit)
    monkeypatch.undo()

    # what was written reads back intact (strict parse, no duplicates, parts loadable)
    partial = _read_results(out)
    assert 0 < len(partial["scores"]) < N_IMAGES * ROWS_PER_IMAGE
    for k, v in partial["scores"].items():  # and equals the reference
        assert (math.isnan(v) and math.isnan(reference["scores"][k])) or v == pytest.approx(
            reference["scores"][k], rel=1e-5, abs=1e-7)
    summary = run_evaluate(_cfg(tiny_cnn_file, images, out))
    assert summary.errors == 0 and not summary.interrupted
    _assert_equal(_read_results(out), reference)


def test_full_disk_is_raised_not_recorded_as_image_error(tiny_cnn_file, images, tmp_path,
                                                         monkeypatch):
    import h5py

    real_file = h5py.File

    def no_space(name, mode="r", *a, **kw):
        if mode == "w":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_file(name, mode, *a, **kw)

    monkeypatch.setattr(h5py, "File", no_space)
    out = tmp_path / "r"
    with pytest.raises(ResultsWriteError, match="the disk is full"):
        run_evaluate(_cfg(tiny_cnn_file, images, out))
    assert not (out / "errors.csv").exists()


def test_unwritable_output_folder_in_evaluate_and_merge(tiny_cnn_file, images, tmp_path):
    target = Path("/proc/tfxai-results") if os.geteuid() == 0 else tmp_path / "ro" / "r"
    if os.geteuid() != 0:
        (tmp_path / "ro").mkdir()
        (tmp_path / "ro").chmod(0o500)
    res = CliRunner().invoke(main, _args(tiny_cnn_file, images, target))
    assert res.exit_code == 1, res.output
    assert "cannot write" in res.output and str(target) in res.output
    src = tmp_path / "src"
    src.mkdir()
    res = CliRunner().invoke(main, ["merge", str(src), "--out", str(target)])
    assert res.exit_code == 1 and "cannot write" in res.output


def test_key_index_is_a_set_of_key_tuples():
    from tfxai.results import KeyIndex

    keys = [("a", "m", "p"), ("b", "m", "p"), ("a", "m", "q"), ("a", "m", "p")]
    index = KeyIndex(keys)
    assert len(index) == 3 and set(index) == set(keys)
    assert ("a", "m", "p") in index and ("b", "m", "q") not in index and ("a",) not in index
    assert "a" not in index and () not in index
    other = KeyIndex([("c", "m", "p"), ("a", "m", "p")])
    index |= other
    assert len(index) == 4 and ("c", "m", "p") in index


def test_streamed_rows_ignore_a_torn_line(tmp_path):
    from tfxai.results import CsvTable

    table = CsvTable(tmp_path / "t.csv", ["a", "b"])
    table.append([{"a": 1, "b": "x y"}, {"a": 2, "b": 3}])
    with (tmp_path / "t.csv").open("a") as fh:
        fh.write("3,tor")
    assert [r["a"] for r in table.iter_rows()] == ["1", "2"]
    assert table.keys(["a"]) == {("1",), ("2",)} and ("2",) in table.key_index(["a"])
