"""report.html renders in headless Chromium: the screenshot shows the plots and the tables.

Needs the Debian ``chromium`` package (``apt-get install -y chromium``); skipped when it is absent.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tfxai.analysis import AnalysisOptions, analyse

CHROMIUM = shutil.which("chromium") or (
    "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium not installed (apt-get install -y chromium)"
)

BAR_BLUE = (0x1F, 0x77, 0xB4)  # first bar colour of tfxai.analysis.plots
VERDICT_RED = (0xCF, 0x22, 0x2E)  # .unreliable in the report's stylesheet
TABLE_HEADER_GREY = (0xF0, 0xF0, 0xF0)  # th background


def small_results(folder: Path) -> Path:
    """Two models × two methods × two metrics; the infidelity order flips between models."""
    rows = []
    means = {
        "iou": {"a": (0.2, 0.5), "b": (0.3, 0.6)},
        "infidelity": {"a": (1.0, 2.0), "b": (2.0, 1.0)},
    }
    for metric, per_model in means.items():
        for model, (first, second) in per_model.items():
            for method, mean in (("gradcam", first), ("saliency", second)):
                for k in range(3):
                    rows.append({
                        "image_id": f"i{k}", "model": model, "weights": "imagenet", "method": method,
                        "method_params": "{}", "metric": metric, "metric_params": "{}", "variant": "",
                        "value": mean + 0.01 * k, "target": 1, "label": 1, "predicted": 1,
                        "confidence": 0.5 + 0.2 * k, "seconds": 0.1, "seed": 0, "note": "",
                    })  # fmt: skip
    folder.mkdir(parents=True)
    pd.DataFrame(rows).to_csv(folder / "scores.csv", index=False)
    return folder


def colour_share(pixels: np.ndarray, colour: tuple[int, int, int], tolerance: int = 6) -> float:
    """Share of pixels within ``tolerance`` of ``colour`` on every channel."""
    close = np.all(np.abs(pixels[..., :3].astype(int) - np.array(colour)) <= tolerance, axis=-1)
    return float(close.mean())


def test_report_renders_with_plots_and_tables(tmp_path):
    from PIL import Image

    folder = small_results(tmp_path / "results")
    analyse([folder], tmp_path / "out", AnalysisOptions(accuracy={"a": 0.6, "b": 0.8}))
    report = tmp_path / "out" / "report.html"
    shot = tmp_path / "shot.png"
    profile = tmp_path / "profile"
    profile.mkdir()
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--hide-scrollbars", f"--user-data-dir={profile}", f"--screenshot={shot}",
        "--window-size=1400,2400", report.as_uri(),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert shot.is_file(), f"no screenshot; chromium said:\n{done.stderr[-2000:]}"
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape[:2] == (2400, 1400)
    # the embedded PNG plots were decoded and drawn: bars in matplotlib's first colour
    assert colour_share(pixels, BAR_BLUE) > 0.002
    # the tables were laid out with the inline stylesheet: header cells and a red 'unreliable' verdict
    assert colour_share(pixels, TABLE_HEADER_GREY, tolerance=2) > 0.001
    assert colour_share(pixels, VERDICT_RED, tolerance=20) > 0.00001
    # and it is not a blank page: a good share of non-white pixels
    assert float((pixels.sum(axis=-1) < 600).mean()) > 0.02


BEST_GREEN = (0xDA, 0xFB, 0xE1)  # td.best: the best method, or every tied one
LOUD_RED = (0xFF, 0xEB, 0xE9)  # .loud: undefined values
BOX_GREEN = (0x00, 0xFF, 0x00)  # the gallery's annotated boxes


def chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    """Headless Chromium with a fresh profile and no network chatter."""
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--hide-scrollbars", f"--user-data-dir={profile}", *args,
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)


def honest_results(folder: Path) -> Path:
    """One model, two methods: a tie on iou, raw (scale-dependent) infidelity, gated SSIM values,
    and an attribution store with the image and its VOC box for the gallery."""
    import json

    from PIL import Image

    data = folder.parent / "images"
    data.mkdir(parents=True)
    Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(data / "i0.png")
    (data / "i0.xml").write_text(
        "<annotation><size><width>64</width><height>64</height></size><object><name>n01440764</name>"
        "<bndbox><xmin>9</xmin><ymin>9</ymin><xmax>40</xmax><ymax>40</ymax></bndbox></object>"
        "</annotation>"
    )
    raw = json.dumps({"n_samples": 50, "normalize": False, "seed": 0, "sigma": 0.003})
    rows = []
    for method, iou, infidelity in (("gradcam", [0.4, 0.5, 0.6], 9000.0), ("saliency", [0.4, 0.5, 0.6], 0.09)):
        for k in range(3):
            base = {"image_id": f"i{k}", "model": "m", "weights": "imagenet", "method": method,
                    "method_params": "{}", "variant": "", "target": 0, "label": 0, "predicted": 0,
                    "confidence": 0.8, "seconds": 0.1, "seed": 0, "note": ""}  # fmt: skip
            rows.append({**base, "metric": "iou", "metric_params": "{}", "value": iou[k]})
            rows.append({**base, "metric": "infidelity", "metric_params": raw,
                         "value": infidelity * (1 + k)})  # fmt: skip
            gated = k < 2
            rows.append({**base, "metric": "ssim_augmentation", "metric_params": "{}",
                         "variant": "rotate_15", "value": np.nan if gated else 0.8,
                         "note": "gated out: |ΔP| = 0.2 ≥ 0.05" if gated else ""})  # fmt: skip
    folder.mkdir(parents=True)
    pd.DataFrame(rows).to_csv(folder / "scores.csv", index=False)
    pd.DataFrame([{"image_id": f"i{k}", "model": "m", "weights": "imagenet", "label": 0, "predicted": 0,
                   "confidence": 0.8, "correct": True} for k in range(3)]).to_csv(
        folder / "predictions.csv", index=False)  # fmt: skip
    import h5py

    with h5py.File(folder / "attributions.h5", "w") as handle:
        for method in ("gradcam", "saliency"):
            group = handle.require_group(f"m/{method}/h")
            group.attrs["weights"] = "imagenet"
            array = np.zeros((64, 64), np.float32)
            array[10:40, 10:40] = 1.0
            group.create_dataset("i0", data=array).attrs["target"] = 0
    (folder / "runs.jsonl").write_text(json.dumps({"command": "evaluate", "images": str(data),
                                                   "annotations": str(data), "resize": "squash"}) + "\n")
    return folder


def test_report_shows_intervals_ties_comparability_undefined_values_and_gallery(tmp_path):
    from PIL import Image

    folder = honest_results(tmp_path / "results")
    analyse([folder], tmp_path / "out", AnalysisOptions())
    report = (tmp_path / "out" / "report.html").as_uri()
    (tmp_path / "p1").mkdir()
    dom = chromium(["--dump-dom", report], tmp_path / "p1")
    text = dom.stdout
    assert "<table" in text, dom.stderr[-2000:]
    # the DOM Chromium built holds the new pieces
    assert "mean [95% CI] (count)" in text and "0.5 [0.4, 0.6] (3)" in text  # interval next to the mean
    assert "tie: gradcam, saliency" in text
    assert "Not comparable across methods, so shown but never ranked: infidelity (normalize=false" in text
    assert "not ranked: not comparable" in text
    assert "ssim_augmentation: 4 of 6 values undefined (67%): 4 gated out (|ΔP| ≥ 0.05)" in text
    assert "needs at least two models of one architecture; these results have one model (m)" in text
    # and the screenshot shows them: green tied cells, the red undefined-values box, the gallery boxes
    shot = tmp_path / "shot.png"
    (tmp_path / "p2").mkdir()
    done = chromium([f"--screenshot={shot}", "--window-size=1400,5000", report], tmp_path / "p2")
    assert shot.is_file(), f"no screenshot; chromium said:\n{done.stderr[-2000:]}"
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert colour_share(pixels, BEST_GREEN, tolerance=2) > 0.0005
    assert colour_share(pixels, LOUD_RED, tolerance=2) > 0.0005
    assert colour_share(pixels, BOX_GREEN, tolerance=40) > 0.00002
    assert colour_share(pixels, BAR_BLUE) > 0.002
