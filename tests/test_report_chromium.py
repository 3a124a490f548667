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
