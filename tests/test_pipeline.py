"""End-to-end pipeline and CLI: attribute, resume, kill-and-resume, bad input, exit codes."""

from __future__ import annotations

import csv
import json
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
    assert not (tmp_path / "r").exists(), "a usage error must write nothing"
    # the same in evaluate (there the metrics are checked too)
    res = CliRunner().invoke(main, ["evaluate", "--metric", "iou", *argv[1:]])
    assert res.exit_code == 2 and message in res.output, res.output
    assert not (tmp_path / "r").exists(), "a usage error must write nothing"


@pytest.mark.parametrize("param", ["iou.nosuch=1", "iou.k=-1"])
def test_bad_metric_parameter_writes_nothing(tiny_cnn_file, image_dir, tmp_path, param):
    res = CliRunner().invoke(main, ["evaluate", "--model", str(tiny_cnn_file), "--metric", "iou",
                                    "--images", str(image_dir), "--out", str(tmp_path / "r"),
                                    "--param", param, "--no-progress"])
    assert res.exit_code == 2, res.output
    assert "iou" in res.output
    assert not (tmp_path / "r").exists()


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


def _started_run(model: Path, tmp_path: Path, methods: str, n_images: int, seed: int,
                 rows: int) -> tuple[list[str], Path, subprocess.Popen]:
    """Start ``attribute`` of ``methods`` on ``n_images`` noise images (seeded by ``seed``, 2 a
    batch) into ``tmp_path/r`` and return once ``rows`` predictions are written:
    (the command's arguments, the output folder, the running process)."""
    folder = _noise_images(tmp_path / "many", n_images, seed=seed)
    out = tmp_path / "r"
    args = ["attribute", "--model", str(model), "--method", methods,
            "--images", str(folder), "--out", str(out), "--batch-size", "2", "--no-progress"]
    proc = _run_cli(args)
    _wait_for_predictions(out, rows)
    return args, out, proc


@pytest.mark.slow
def test_sigkill_then_resume_has_no_duplicates(tiny_cnn_file, tmp_path):
    # some batches written: then kill hard
    args, out, proc = _started_run(tiny_cnn_file, tmp_path, "saliency,gradcam", 40, seed=1,
                                   rows=6)
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
    _, out, proc = _started_run(tiny_cnn_file, tmp_path, "saliency", 60, seed=2, rows=4)
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


# ------------------------------------------------------------------ issue 19: a first hour that tells the truth


def _evaluate(model: Path, *args: str) -> list[str]:
    return ["evaluate", "--model", str(model), "--no-progress", *args]


def test_voc_xml_next_to_the_images_gives_boxes_and_labels(tiny_cnn_file, image_dir, tmp_path):
    """No --annotations: the XML files beside the images give the boxes and the labels."""
    out = tmp_path / "r"
    res = CliRunner().invoke(main, _evaluate(tiny_cnn_file, "--method", "gradcam", "--metric",
                                             "iou,pointing_game", "--images", str(image_dir),
                                             "--out", str(out)))
    assert res.exit_code == 0, res.output
    rows = _rows(out / "scores.csv")
    assert len(rows) == 12
    assert {r["label"] for r in rows} == {"0"}  # n01440764 (tench) from the XML
    assert all("no boxes" not in r["note"] for r in rows)
    assert sum(np.isfinite(float(r["value"])) for r in rows) == 12
    assert {p["label"] for p in _rows(out / "predictions.csv")} == {"0"}


def _no_model_loads(monkeypatch) -> None:
    import tfxai.pipeline.session

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the usage error")

    monkeypatch.setattr(tfxai.pipeline.session, "load_model", refuse)


@pytest.mark.parametrize("annotations", [None, "empty"])
def test_metric_needing_boxes_on_images_without_any_fails_before_the_model(
        tiny_cnn_file, tmp_path, monkeypatch, annotations):
    _no_model_loads(monkeypatch)
    folder = _noise_images(tmp_path / "plain", 3, seed=4)
    extra = []
    if annotations:
        (tmp_path / "ann").mkdir()
        extra = ["--annotations", str(tmp_path / "ann")]
    res = CliRunner().invoke(main, _evaluate(tiny_cnn_file, "--metric", "pointing_game,iou",
                                             "--images", str(folder), "--out",
                                             str(tmp_path / "r"), *extra))
    assert res.exit_code == 2, res.output
    assert "iou, pointing_game need bounding boxes" in res.output
    assert "none of the 3 images" in res.output and "--annotations DIR" in res.output
    if annotations:
        assert str(tmp_path / "ann") in res.output
    assert not (tmp_path / "r").exists()


def test_metrics_without_boxes_run_on_images_without_any(tiny_cnn_file, tmp_path):
    folder = _noise_images(tmp_path / "plain", 2, seed=4)
    res = CliRunner().invoke(main, _evaluate(tiny_cnn_file, "--metric", "infidelity",
                                             "--param", "infidelity.n_samples=2",
                                             "--images", str(folder), "--out",
                                             str(tmp_path / "r")))
    assert res.exit_code == 0, res.output
    assert len(_rows(tmp_path / "r" / "scores.csv")) == 2


@pytest.mark.parametrize("command", ["attribute", "evaluate"])
def test_target_label_without_any_label_fails_before_the_model(tiny_cnn_file, tmp_path,
                                                                monkeypatch, command):
    _no_model_loads(monkeypatch)
    folder = _noise_images(tmp_path / "plain", 2, seed=5)
    args = ["--metric", "infidelity"] if command == "evaluate" else []
    res = CliRunner().invoke(main, [command, "--model", str(tiny_cnn_file), *args, "--images",
                                    str(folder), "--target", "label", "--out",
                                    str(tmp_path / "r")])
    assert res.exit_code == 2, res.output
    assert "--target label needs the true class" in res.output and "--labels" in res.output
    assert not (tmp_path / "r").exists()


def test_some_images_without_boxes_are_a_note_and_counted_nan(tiny_cnn_file, image_dir,
                                                              tmp_path):
    from PIL import Image

    rng = np.random.default_rng(9)
    for name in ("zz_a", "zz_b"):  # no XML beside these two
        Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(
            image_dir / f"{name}.png")
    out = tmp_path / "r"
    res = CliRunner().invoke(main, _evaluate(tiny_cnn_file, "--method", "gradcam", "--metric",
                                             "iou", "--images", str(image_dir), "--out",
                                             str(out)))
    assert res.exit_code == 0, res.output
    assert "2 of 8 images have no annotation file next to them" in res.output
    assert "8 score rows (2 NaN)" in res.output
    assert "iou: 2 of 8 NaN — no boxes" in res.output
    nan = [r["image_id"] for r in _rows(out / "scores.csv") if r["value"] == "nan"]
    assert sorted(nan) == ["zz_a", "zz_b"]


def test_nan_summary_by_metric_variant_and_reason():
    from tfxai.metadata import nan_reason
    from tfxai.run import RunSummary

    assert nan_reason("gated out: |ΔP| = 0.123 ≥ 0.05") == "gated out (|ΔP| ≥ 0.05)"
    assert nan_reason("gated out: |ΔP| = 7e-02 ≥ 0.05") == "gated out (|ΔP| ≥ 0.05)"
    assert nan_reason("") == "no reason recorded"
    assert nan_reason("no boxes") == "no boxes"
    s = RunSummary()
    row = lambda variant, value, note="": {"metric": "ssim_augmentation",  # noqa: E731
                                           "variant": variant, "value": value,
                                           "_metric_note": note}
    s.count_rows([row("rotate_15", np.nan, "gated out: |ΔP| = 0.2 ≥ 0.05"),
                  row("rotate_15", np.nan, "gated out: |ΔP| = 0.09 ≥ 0.05"),
                  row("sharpen", np.nan, "non-finite prediction on the augmented image"),
                  row("sharpen", 0.9),
                  {"metric": "iou", "variant": "", "value": 0.5, "_metric_note": ""}])
    assert s.undefined_lines() == [
        "ssim_augmentation: 3 of 4 NaN — 2 gated out (|ΔP| ≥ 0.05), 1 non-finite prediction "
        "on the augmented image; by variant: rotate_15 2/2, sharpen 1/2"]
    other = RunSummary()
    other.add_counts(s.values, s.undefined)
    assert other.undefined_lines() == s.undefined_lines()


def test_nan_reasons_read_as_the_report_reads_them():
    """The terminal and the report give one reason the same words."""
    undefined = pytest.importorskip("tfxai.analysis.undefined")
    from tfxai.metadata import nan_reason

    for note in ("gated out: |ΔP| = 0.123 ≥ 0.05", "no boxes", "", "all-zero map",
                 "non-finite prediction on the augmented image"):
        assert nan_reason(note) == undefined.reason(note), note


def test_seconds_are_timed_per_image(tiny_cnn_file, image_dir, tmp_path, monkeypatch):
    """One slow image shows in its own ``seconds`` only; the warm-up call is not timed."""
    import zlib

    import tfxai.pipeline.session

    slow_key = zlib.crc32(b"img3")
    calls = []
    real_get = tfxai.pipeline.session.get_attributer

    def get_attributer(name, bb, **params):
        att = real_get(name, bb, **params)
        original = att.attribute

        def attribute(images, targets=None, seeds=None):
            calls.append(len(images))
            if seeds is not None and slow_key in np.asarray(seeds).tolist():
                time.sleep(0.5)
            return original(images, targets, seeds=seeds)

        att.attribute = attribute
        return att

    monkeypatch.setattr(tfxai.pipeline.session, "get_attributer", get_attributer)
    out = tmp_path / "r"
    res = CliRunner().invoke(main, _evaluate(tiny_cnn_file, "--method", "saliency", "--metric",
                                             "pointing_game", "--images", str(image_dir),
                                             "--out", str(out), "--batch-size", "6"))
    assert res.exit_code == 0, res.output
    assert calls == [1] * 7  # one warm-up call (untimed), then one call per image
    secs = {r["image_id"]: float(r["seconds"]) for r in _rows(out / "scores.csv")}
    assert secs["img3"] >= 0.5
    assert max(v for k, v in secs.items() if k != "img3") < 0.25
    stored = {i.image_id: i.seconds for i in AttributionStore(out / "attributions").items()}
    assert stored == pytest.approx(secs)


def test_progress_bar_names_model_method_stage_and_counts_images(tiny_cnn_file, image_dir,
                                                                 tmp_path):
    res = CliRunner().invoke(main, ["evaluate", "--model", str(tiny_cnn_file), "--method",
                                    "saliency,gradcam", "--metric", "pointing_game",
                                    "--images", str(image_dir), "--out", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    text = res.output.replace("\r", "\n")
    assert "tiny_cnn saliency: attribute" in text
    assert "tiny_cnn gradcam: evaluate pointing_game" in text
    assert "6/6" in text and "12/12" not in text and "/12 " not in text


@pytest.fixture
def samples_dir(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "samples"
    monkeypatch.setenv("TFXAI_SAMPLES_DIR", str(folder))
    return folder


def test_attribute_with_only_a_model_uses_the_bundled_samples_and_gradcam(
        tiny_cnn_file, samples_dir, tmp_path):
    out = tmp_path / "r"
    res = CliRunner().invoke(main, ["attribute", "--model", str(tiny_cnn_file), "--out",
                                    str(out), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert res.output.splitlines()[0] == \
        "using the bundled sample images (6) and method gradcam"
    assert sorted(p.name for p in samples_dir.iterdir()) == sorted(
        f"{n}.{e}" for n in ("astronaut", "chelsea", "china", "coffee", "flower", "rocket")
        for e in ("png", "xml"))
    preds = {p["image_id"]: p["label"] for p in _rows(out / "predictions.csv")}
    assert preds == {"astronaut": "812", "chelsea": "281", "china": "698", "coffee": "967",
                     "flower": "985", "rocket": "657"}  # from the bundled XML files
    assert {i.method for i in AttributionStore(out / "attributions").items()} == {"gradcam"}
    runs = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    assert runs[-1]["images"] == str(samples_dir) and runs[-1]["methods"] == ["gradcam"]


def test_evaluate_iou_with_only_a_model_has_boxes(tiny_cnn_file, samples_dir, tmp_path):
    out = tmp_path / "r"
    res = CliRunner().invoke(main, ["evaluate", "--metric", "iou", "--model",
                                    str(tiny_cnn_file), "--out", str(out), "--no-progress",
                                    "--limit", "4"])
    assert res.exit_code == 0, res.output
    assert "using the bundled sample images (4) and method gradcam" in res.output
    rows = _rows(out / "scores.csv")
    assert len(rows) == 4 and all("no boxes" not in r["note"] for r in rows)


@pytest.mark.slow
def test_product_card_evaluate_iou_on_efficientnet_lite0(samples_dir, tmp_path):
    """Issue 19, done when: `tfxai evaluate --metric iou --model efficientnet_lite0` with no
    other option exits 0 with finite IoU values (real offline weights, bundled images)."""
    out = tmp_path / "r"
    res = CliRunner().invoke(main, ["evaluate", "--metric", "iou", "--model",
                                    "efficientnet_lite0", "--out", str(out), "--no-progress"])
    assert res.exit_code == 0, res.output
    rows = _rows(out / "scores.csv")
    values = [float(r["value"]) for r in rows]
    assert len(values) == 6 and all(np.isfinite(values)), rows
    assert all(0 <= v <= 1 for v in values) and len(set(values)) > 1
