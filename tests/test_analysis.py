"""Tests of tfxai.analysis on synthetic results folders with known answers (no model needed)."""

from __future__ import annotations

import importlib.util
import itertools
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from scipy.stats import friedmanchisquare

from tfxai.analysis import (
    ORDER_PRESERVING,
    RELIABLE,
    UNRELIABLE,
    AnalysisOptions,
    ResultsError,
    analyse,
    augmentation,
    confidence_band,
    cost,
    describe,
    gallery,
    kendalls_w,
    load_results,
    metric_direction,
    pair_order_share,
    rank_methods,
    reliability,
    roar,
)
from tfxai.analysis.modelinfo import parse_assignments

REPO = Path(__file__).resolve().parents[1]
SCORE_COLUMNS = [
    "image_id", "model", "weights", "method", "method_params", "metric", "metric_params", "variant",
    "value", "target", "label", "predicted", "confidence", "seconds", "seed", "note",
]  # fmt: skip


def score_row(
    image_id,
    model,
    method,
    metric,
    value,
    variant="",
    confidence=0.5,
    seconds=1.0,
    weights="imagenet",
):
    """One scores.csv row with the schema's columns."""
    return {
        "image_id": image_id, "model": model, "weights": weights, "method": method,
        "method_params": json.dumps({"p": 1}), "metric": metric, "metric_params": "{}", "variant": variant,
        "value": value, "target": 1, "label": 1, "predicted": 1, "confidence": confidence,
        "seconds": seconds, "seed": 0, "note": "" if not (isinstance(value, float) and math.isnan(value)) else "gate",
    }  # fmt: skip


def write_results(folder: Path, rows: list[dict], predictions: list[dict] | None = None) -> Path:
    """Write scores.csv (and predictions.csv) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=SCORE_COLUMNS).to_csv(folder / "scores.csv", index=False)
    if predictions is None:
        keys = sorted({(r["image_id"], r["model"], r["weights"], r["confidence"]) for r in rows})
        predictions = [
            {
                "image_id": i,
                "model": m,
                "weights": w,
                "label": 1,
                "predicted": 1,
                "confidence": c,
                "correct": True,
            }
            for i, m, w, c in keys
        ]
    pd.DataFrame(predictions).to_csv(folder / "predictions.csv", index=False)
    return folder


def family_rows(
    metric: str, means: dict[str, dict[str, float]], n_images: int = 3, variant: str = ""
) -> list[dict]:
    """Rows whose per-(model, method) mean is exactly ``means[model][method]`` (values mean±1)."""
    rows = []
    for model, per_method in means.items():
        for method, mean in per_method.items():
            offsets = np.linspace(-1.0, 1.0, n_images) * 0.01
            for k, off in enumerate(offsets):
                rows.append(
                    score_row(
                        f"img{k}", model, method, metric, mean + off, variant=variant,
                        weights=f"/m/{model}.keras",
                    )
                )
    return rows


# ---------------------------------------------------------------- statistics and bands


def test_describe_mean_sample_std_counts():
    stats = describe(pd.Series([1.0, 2.0, 3.0, 4.0, np.nan]))
    assert stats["mean"] == pytest.approx(2.5)
    # sample std (ddof=1): sqrt(((1.5² + 0.5²) · 2) / 3) = sqrt(5/3)
    assert stats["std_sample"] == pytest.approx(math.sqrt(5.0 / 3.0))
    assert stats["count"] == 4 and stats["nan_count"] == 1
    single = describe(pd.Series([7.0]))
    assert single["mean"] == 7.0 and math.isnan(single["std_sample"])


def test_confidence_band_threshold_is_strict():
    bands = confidence_band(pd.Series([0.95, 0.91, 0.9, 0.5, np.nan]), 0.9)
    assert bands.tolist() == ["high", "high", "low", "low", "unknown"]
    assert confidence_band(pd.Series([0.95, 0.91]), 0.92).tolist() == ["high", "low"]


def test_summary_and_band_split_known_answers(tmp_path):
    rows = [
        score_row("a", "vgg16", "gradcam", "iou", 0.2, confidence=0.95),
        score_row("b", "vgg16", "gradcam", "iou", 0.4, confidence=0.99),
        score_row("c", "vgg16", "gradcam", "iou", 0.6, confidence=0.90),  # exactly 0.9: low
        score_row("d", "vgg16", "gradcam", "iou", float("nan"), confidence=0.30),
        score_row("a", "vgg16", "saliency", "iou", 0.1, confidence=0.95),
        score_row("b", "vgg16", "saliency", "iou", 0.3, confidence=0.99),
    ]
    folder = write_results(tmp_path / "r", rows)
    analyse([folder], tmp_path / "out", AnalysisOptions(plots=False, report=False))
    summary = pd.read_csv(tmp_path / "out" / "summary.csv").set_index("method")
    assert summary.loc["gradcam", "mean"] == pytest.approx(0.4)
    assert summary.loc["gradcam", "std_sample"] == pytest.approx(0.2)
    assert summary.loc["gradcam", "count"] == 3 and summary.loc["gradcam", "nan_count"] == 1
    assert summary.loc["saliency", "mean"] == pytest.approx(0.2)
    bands = pd.read_csv(tmp_path / "out" / "summary_by_band.csv")
    gradcam = bands[bands["method"] == "gradcam"].set_index("band")
    assert gradcam.loc["high", "mean"] == pytest.approx(0.3) and gradcam.loc["high", "count"] == 2
    assert gradcam.loc["low", "mean"] == pytest.approx(0.6) and gradcam.loc["low", "nan_count"] == 1
    # a stricter threshold moves image b (0.99) alone into the high band
    analyse(
        [folder],
        tmp_path / "out2",
        AnalysisOptions(high_confidence=0.98, plots=False, report=False),
    )
    bands = pd.read_csv(tmp_path / "out2" / "summary_by_band.csv")
    high = bands[(bands["method"] == "gradcam") & (bands["band"] == "high")]
    assert high["mean"].tolist() == [pytest.approx(0.4)]


def test_band_uses_top1_confidence_from_predictions(tmp_path):
    rows = [
        score_row("a", "vgg16", "gradcam", "iou", 0.2, confidence=0.2)
    ]  # target probability, say
    predictions = [{"image_id": "a", "model": "vgg16", "weights": "imagenet", "label": 1, "predicted": 1,
                    "confidence": 0.97, "correct": True}]  # fmt: skip
    folder = write_results(tmp_path / "r", rows, predictions)
    result = analyse([folder], tmp_path / "o", AnalysisOptions(plots=False, report=False))
    assert result.tables["summary_by_band"]["band"].tolist() == ["high"]
    assert result.tables["model_info"]["high_share"].tolist() == [1.0]


def test_summary_by_band_option_and_variant_kept(tmp_path):
    rows = [score_row("a", "m", "gradcam", "confidence_drop", 10.0, variant="b"),
            score_row("a", "m", "gradcam", "confidence_drop", 50.0, variant="s")]  # fmt: skip
    folder = write_results(tmp_path / "r", rows)
    result = analyse(
        [folder], tmp_path / "o", AnalysisOptions(by=["method", "band"], plots=False, report=False)
    )
    table = result.tables["summary"]
    assert list(table.columns[:4]) == ["metric", "variant", "method", "band"]
    assert table.set_index("variant")["mean"].to_dict() == {"b": 10.0, "s": 50.0}


# ---------------------------------------------------------------- directions


def test_directions_table_variant_rules_and_assumed():
    assert metric_direction("iou", use_evaluation=False).higher_is_better
    assert not metric_direction("infidelity", use_evaluation=False).higher_is_better
    assert not metric_direction("confidence_drop", "b", use_evaluation=False).higher_is_better
    assert metric_direction("confidence_drop", "s", use_evaluation=False).higher_is_better
    assert metric_direction("confidence_drop_s", use_evaluation=False).higher_is_better
    unknown = metric_direction("made_up_metric", use_evaluation=False)
    assert unknown.higher_is_better and unknown.assumed
    scores = pd.DataFrame({"metric": ["made_up_metric"], "variant": [""], "direction": ["lower"]})
    from_csv = metric_direction("made_up_metric", "", scores, use_evaluation=False)
    assert not from_csv.higher_is_better and from_csv.source == "scores.csv"


def test_unknown_metric_is_reported(tmp_path):
    folder = write_results(tmp_path / "r", [score_row("a", "m", "x", "made_up_metric", 1.0)])
    result = analyse([folder], tmp_path / "o", AnalysisOptions(plots=False, report=False))
    assert any("made_up_metric" in n and "assumed" in n for n in result.notes)


# ---------------------------------------------------------------- Kendall's W and pair share


def test_kendalls_w_hand_computation():
    # 3 raters (models) × 4 items (methods); ranks given directly.
    #   rater 1: A1 B2 C3 D4;  rater 2: A1 B3 C2 D4;  rater 3: A2 B1 C3 D4
    #   rank sums R = (4, 6, 8, 12); mean rank sum m(n+1)/2 = 3·5/2 = 7.5
    #   S = 3.5² + 1.5² + 0.5² + 4.5² = 12.25 + 2.25 + 0.25 + 20.25 = 35
    #   W = 12·S / (m²(n³−n)) = 420 / (9·60) = 7/9
    ranks = np.array([[1, 2, 3, 4], [1, 3, 2, 4], [2, 1, 3, 4]], dtype=float)
    assert kendalls_w(ranks) == pytest.approx(7.0 / 9.0)
    # With a tie: rater 3 ties A and B at 1.5 → R = (3.5, 6.5, 8, 12), S = 16 + 1 + 0.25 + 20.25 = 37.5;
    #   T = 2³ − 2 = 6 for rater 3; W = 12·37.5 / (9·60 − 3·6) = 450 / 522 = 25/29
    tied = np.array([[1, 2, 3, 4], [1, 3, 2, 4], [1.5, 1.5, 3, 4]], dtype=float)
    assert kendalls_w(tied) == pytest.approx(25.0 / 29.0)
    assert kendalls_w(np.tile([1.0, 2.0, 3.0], (4, 1))) == pytest.approx(1.0)
    assert math.isnan(kendalls_w(np.array([[1.0, 2.0]])))


def test_kendalls_w_agrees_with_tie_corrected_friedman():
    # W = χ²_F / (m(n−1)) with scipy's tie-corrected Friedman statistic.
    rng = np.random.default_rng(0)
    values = rng.integers(0, 4, size=(6, 5)).astype(float)  # 6 raters × 5 items, with ties
    ranks = rank_methods(values, higher_is_better=True)
    chi2 = friedmanchisquare(*values.T).statistic
    assert kendalls_w(ranks) == pytest.approx(chi2 / (6 * 4))


def test_rank_methods_direction_and_ties():
    values = np.array([[0.9, 0.5, 0.5]])
    assert rank_methods(values, True).tolist() == [[1.0, 2.5, 2.5]]
    assert rank_methods(values, False).tolist() == [[3.0, 1.5, 1.5]]


def test_pair_order_share_known_answers():
    same = np.array([[3.0, 2.0, 1.0], [30.0, 20.0, 10.0]])
    assert pair_order_share(same) == 1.0
    one_swap = np.array([[3.0, 2.0, 1.0], [3.0, 1.0, 2.0]])  # pair (B, C) flips; (A,B), (A,C) keep
    assert pair_order_share(one_swap) == pytest.approx(2.0 / 3.0)
    reversed_ = np.array([[3.0, 2.0, 1.0], [1.0, 2.0, 3.0]])
    assert pair_order_share(reversed_) == 0.0
    tie_then_order = np.array([[1.0, 1.0], [2.0, 1.0]])
    assert pair_order_share(tie_then_order) == 0.0


# ---------------------------------------------------------------- reliability verdicts


ACCURACY = {"f20": 0.55, "f40": 0.65, "f60": 0.72, "f80": 0.78}


def reliability_folder(tmp_path: Path) -> Path:
    """A family of 4 models × 3 methods with one constant-order and one flipping metric."""
    constant = {m: {"gradcam": 0.5 + 0.1 * k, "ig": 0.3 + 0.1 * k, "saliency": 0.1 + 0.1 * k}
                for k, m in enumerate(ACCURACY)}  # fmt: skip
    flipping = {
        "f20": {"gradcam": 3.0, "ig": 2.0, "saliency": 1.0},
        "f40": {"gradcam": 1.0, "ig": 2.0, "saliency": 3.0},
        "f60": {"gradcam": 3.0, "ig": 1.0, "saliency": 2.0},
        "f80": {"gradcam": 2.0, "ig": 3.0, "saliency": 1.0},
    }
    rows = family_rows("max_sensitivity", constant, variant="relative") + family_rows(
        "infidelity", flipping
    )
    return write_results(tmp_path / "family", rows)


def test_reliability_constant_order_reliable_and_flipped_unreliable(tmp_path):
    folder = reliability_folder(tmp_path)
    accuracy = ",".join(f"{k}={v}" for k, v in ACCURACY.items())
    options = AnalysisOptions(
        accuracy=parse_assignments(accuracy, "--accuracy", True), plots=False, report=False
    )
    result = analyse([folder], tmp_path / "o", options)
    table = reliability.verdicts(result.tables["reliability"]).set_index("metric")
    assert table.loc["max_sensitivity", "verdict"] == RELIABLE
    assert table.loc["max_sensitivity", "pair_share"] == 1.0
    assert table.loc["max_sensitivity", "kendalls_w"] == pytest.approx(1.0)
    # lower is better for sensitivity: the smallest mean (saliency) is best
    assert table.loc["max_sensitivity", "best_method"] == "saliency"
    assert table.loc["infidelity", "verdict"] == UNRELIABLE
    assert table.loc["infidelity", "pair_share"] == 0.0
    # rankings (lower is better) per model: f20 (3,2,1), f40 (1,2,3), f60 (3,1,2), f80 (2,3,1)
    #   rank sums (9, 8, 7), mean 8: S = 2, W = 12·2 / (16·24) = 1/16
    assert table.loc["infidelity", "kendalls_w"] == pytest.approx(1.0 / 16.0)
    # metric_params "{}" do not say normalize=true: raw infidelity names no best method
    assert table.loc["infidelity", "best_method"] == ""
    models = result.tables["model_info"].set_index("model_id")
    assert (
        models.loc["f40", "accuracy"] == 0.65 and models.loc["f40", "accuracy_source"] == "option"
    )


def test_reliability_across_architectures_order_preserving(tmp_path):
    # Within each architecture the order is constant, but the two architectures disagree.
    means = {
        "vgg_a": {"gradcam": 3.0, "ig": 2.0, "lime": 1.0},
        "vgg_b": {"gradcam": 3.5, "ig": 2.5, "lime": 1.5},
        "res_a": {"gradcam": 1.0, "ig": 2.0, "lime": 3.0},
        "res_b": {"gradcam": 1.5, "ig": 2.5, "lime": 3.5},
    }
    folder = write_results(tmp_path / "r", family_rows("avg_sensitivity", means))
    arch = parse_assignments(
        "vgg_a=vgg16,vgg_b=vgg16,res_a=resnet50,res_b=resnet50", "--architecture"
    )
    result = analyse(
        [folder], tmp_path / "o", AnalysisOptions(architecture=arch, plots=False, report=False)
    )
    table = result.tables["reliability"].set_index("scope")
    assert (
        table.loc["within:vgg16", "pair_share"] == 1.0
        and table.loc["within:resnet50", "pair_share"] == 1.0
    )
    assert table.loc["across", "pair_share"] == 0.0
    assert table.loc["verdict", "verdict"] == ORDER_PRESERVING
    # the same data as one architecture is unreliable
    result = analyse([folder], tmp_path / "o2", AnalysisOptions(plots=False, report=False))
    assert reliability.verdicts(result.tables["reliability"])["verdict"].tolist() == [UNRELIABLE]


def test_reliability_drops_methods_undefined_in_a_model(tmp_path):
    means = {"a": {"x": 1.0, "y": 2.0, "z": float("nan")}, "b": {"x": 1.5, "y": 2.5, "z": 0.0}}
    folder = write_results(tmp_path / "r", family_rows("iou", means))
    result = analyse([folder], tmp_path / "o", AnalysisOptions(plots=False, report=False))
    row = reliability.verdicts(result.tables["reliability"]).iloc[0]
    assert row["methods_dropped"] == "z" and row["n_methods"] == 2 and row["verdict"] == RELIABLE


# ---------------------------------------------------------------- ssim split, cost, roar


def test_ssim_rotations_vs_filters():
    rows = [score_row("a", "m", "gradcam", "ssim_augmentation", v, variant=var) for var, v in
            [("rotate_-30", 0.9), ("rotate_15", 0.7), ("sharpen", 0.4), ("boost_chromaticity", 0.2)]]  # fmt: skip
    scores = pd.DataFrame(rows).assign(model_id="m")
    groups = augmentation.ssim_groups(scores).set_index("augmentation_group")
    assert list(groups.index) == ["rotations", "filters", "all"]
    assert groups.loc["rotations", "mean"] == pytest.approx(0.8)
    assert groups.loc["filters", "mean"] == pytest.approx(0.3)
    assert groups.loc["all", "mean"] == pytest.approx(0.55) and groups.loc["all", "count"] == 4
    per = augmentation.ssim_per_augmentation(scores).set_index("variant")
    assert (
        per.loc["sharpen", "augmentation_group"] == "filters" and per.loc["sharpen", "mean"] == 0.4
    )


def test_cost_counts_each_attribution_once():
    rows = []
    for image, seconds in (("a", 2.0), ("b", 4.0)):
        for metric in (
            "iou",
            "pointing_game",
            "infidelity",
        ):  # the attribution's time repeated per metric
            rows.append(score_row(image, "m", "ig", metric, 0.1, seconds=seconds))
    scores = pd.DataFrame(rows).assign(model_id="m", run="r")
    table = cost.cost_table(scores).iloc[0]
    assert (
        table["count"] == 2
        and table["mean"] == pytest.approx(3.0)
        and table["total_seconds"] == 6.0
    )
    assert table["std_sample"] == pytest.approx(math.sqrt(2.0))


def test_roar_summary_mean_std_and_delta():
    data = pd.DataFrame([
        {"method": m, "fraction": f, "seed": s, "accuracy": acc}
        for m, f, s, acc in [("random", 0.5, 0, 0.8), ("random", 0.5, 1, 0.6),
                             ("ig", 0.5, 0, 0.4), ("ig", 0.5, 1, 0.5)]
    ])  # fmt: skip
    table = roar.roar_summary(data).set_index("method")
    assert table.loc["random", "mean"] == pytest.approx(0.7)
    assert table.loc["random", "std_sample"] == pytest.approx(math.sqrt(0.02))
    assert table.loc["ig", "delta_vs_random"] == pytest.approx(-0.25)


def test_mean_curves_from_curves_csv(tmp_path):
    folder = write_results(tmp_path / "r", [score_row("a", "m", "ig", "deletion", 0.5)])
    points = [("a", 0.0, 1.0), ("b", 0.0, 0.8), ("a", 0.5, 0.4), ("b", 0.5, 0.2)]
    pd.DataFrame([{"image_id": i, "model": "m", "weights": "imagenet", "method": "ig", "method_params": "{}",
                   "metric": "deletion", "metric_params": "{}", "variant": "", "x": x, "y": y}
                  for i, x, y in points]).to_csv(folder / "curves.csv", index=False)  # fmt: skip
    table = analyse([folder], tmp_path / "o", AnalysisOptions(report=False)).tables[
        "curves_summary"
    ]
    assert table["x"].tolist() == [0.0, 0.5]
    assert table["mean"].tolist() == [pytest.approx(0.9), pytest.approx(0.3)]
    assert table["count"].tolist() == [2, 2] and set(table["model_id"]) == {"m"}
    assert (tmp_path / "o" / "plots" / "curves_deletion.png").is_file()


# ---------------------------------------------------------------- loading, accuracy sources


def test_missing_results_folder_and_files_named(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ResultsError, match="empty.*scores.csv"):
        load_results([tmp_path / "empty"])
    with pytest.raises(ResultsError, match="nope.*does not exist"):
        load_results([tmp_path / "nope"])
    (tmp_path / "bad").mkdir()
    pd.DataFrame({"model": ["m"]}).to_csv(tmp_path / "bad" / "scores.csv", index=False)
    with pytest.raises(ResultsError, match=r"bad[/\\]scores.csv: missing column"):
        load_results([tmp_path / "bad"])


def test_accuracy_from_predictions_and_models_csv(tmp_path):
    rows = [score_row(i, "m", "g", "iou", 0.1) for i in "abcd"]
    predictions = [{"image_id": i, "model": "m", "weights": "imagenet", "label": 1, "predicted": p,
                    "confidence": 0.5, "correct": p == 1} for i, p in zip("abcd", (1, 1, 1, 0), strict=True)]  # fmt: skip
    folder = write_results(tmp_path / "r", rows, predictions)
    result = analyse([folder], tmp_path / "o", AnalysisOptions(plots=False, report=False))
    info = result.tables["model_info"].iloc[0]
    assert info["accuracy"] == pytest.approx(0.75) and info["accuracy_source"] == "predictions.csv"
    assert info["mean_confidence"] == pytest.approx(0.5) and info["high_share"] == 0.0
    pd.DataFrame({"model": ["m"], "accuracy": [0.6], "macro_f1": [0.5]}).to_csv(
        folder / "models.csv", index=False
    )
    info = (
        analyse([folder], tmp_path / "o", AnalysisOptions(plots=False, report=False))
        .tables["model_info"]
        .iloc[0]
    )
    assert info["accuracy"] == 0.6 and info["accuracy_source"] == "models.csv"


def test_accuracy_and_architecture_from_models_csv_by_file(tmp_path):
    # fine-tuned models loaded from files: model = file stem, weights = the file path
    rows = [
        score_row("x", stem, "g", "iou", 0.1, weights=f"/m/{stem}.keras") for stem in ("f20", "f40")
    ]
    folder = write_results(tmp_path / "r", rows)
    pd.DataFrame({"model": ["/m/f20.keras", "/m/f40.keras"], "accuracy": [0.61, 0.7],
                  "backbone": ["resnet50", "resnet50"]}).to_csv(folder / "models.csv", index=False)  # fmt: skip
    info = analyse([folder], tmp_path / "o", AnalysisOptions(plots=False, report=False)).tables[
        "model_info"
    ]
    assert info.set_index("model_id")["accuracy"].to_dict() == {"f20": 0.61, "f40": 0.7}
    assert set(info["architecture"]) == {"resnet50"} and set(info["accuracy_source"]) == {
        "models.csv"
    }


def test_models_csv_beside_the_model_files_is_read_without_copying(tmp_path):
    """finetune writes models.csv next to its .keras files; results naming those files use it."""
    models = tmp_path / "models"
    models.mkdir()
    for stem in ("f20", "f40"):
        (models / f"{stem}.keras").write_bytes(b"not read")
    pd.DataFrame({"model": ["f20", "f40"], "accuracy": [0.41, 0.93],
                  "base_model": ["small_cnn", "small_cnn"]}).to_csv(models / "models.csv", index=False)  # fmt: skip
    rows = [score_row("x", stem, "g", "iou", 0.1, weights=str((models / f"{stem}.keras").resolve()))
            for stem in ("f20", "f40")]  # fmt: skip
    folder = write_results(tmp_path / "r", rows)
    opts = AnalysisOptions(plots=False, report=False)
    info = analyse([folder], tmp_path / "o", opts).tables["model_info"].set_index("model_id")
    assert info["accuracy"].to_dict() == {"f20": 0.41, "f40": 0.93}
    assert set(info["accuracy_source"]) == {"models.csv"}
    assert set(info["architecture"]) == {"small_cnn"}
    # a models.csv inside the results folder wins over the one beside the model files
    pd.DataFrame({"model": ["f20"], "accuracy": [0.5]}).to_csv(folder / "models.csv", index=False)
    info = analyse([folder], tmp_path / "o2", opts).tables["model_info"].set_index("model_id")
    assert info["accuracy"].to_dict() == {"f20": 0.5, "f40": 0.93}
    # a broken one is a clear error naming the file
    (models / "models.csv").write_text("accuracy\n0.3\n")
    with pytest.raises(ResultsError, match=r"models[/\\]models.csv: missing column"):
        load_results([folder])


def test_several_folders_and_weights_make_distinct_models(tmp_path):
    a = write_results(
        tmp_path / "a", [score_row("x", "vgg16", "g", "iou", 0.2, weights="/w/f20.keras")]
    )
    b = write_results(
        tmp_path / "b", [score_row("x", "vgg16", "g", "iou", 0.6, weights="/w/f80.keras")]
    )
    result = analyse([a, b], tmp_path / "o", AnalysisOptions(plots=False, report=False))
    means = result.tables["summary"].set_index("model_id")["mean"].to_dict()
    assert means == {"vgg16[f20]": 0.2, "vgg16[f80]": 0.6}


# ---------------------------------------------------------------- gallery


def write_store(path: Path, maps: dict[tuple[str, str, str], np.ndarray]) -> None:
    """An HDF5 store in the model/method/<params-hash>/<image_id> layout."""
    import h5py

    with h5py.File(path, "w") as handle:
        for (model, method, image_id), array in maps.items():
            group = handle.require_group(f"{model}/{method}/abc123")
            group.attrs["method_params"] = json.dumps({"steps": 8})
            group.create_dataset(image_id, data=array)


def test_gallery_reads_store_and_normalises(tmp_path):
    ramp = np.arange(16, dtype=np.float32).reshape(4, 4)
    write_store(tmp_path / "attributions.h5", {
        ("vgg16", "saliency", "img1"): np.stack([ramp, ramp, -3 * ramp], axis=-1),  # channel sum = −ramp
        ("vgg16", "gradcam", "img1"): ramp,
        ("vgg16", "gradcam", "img2"): ramp,
    })  # fmt: skip
    from PIL import Image

    (tmp_path / "images").mkdir()
    Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(tmp_path / "images" / "img1.png")
    items, images = gallery.collect([tmp_path / "attributions.h5"], 1, tmp_path / "images")
    assert sorted((i.method, i.image_id) for i in items) == [
        ("gradcam", "img1"),
        ("saliency", "img1"),
    ]
    saliency = next(i for i in items if i.method == "saliency")
    expected = np.clip(ramp / np.percentile(ramp, 99), 0, 1)  # 99th-percentile clip
    assert np.allclose(gallery.display_map(saliency.attribution), expected)
    assert np.allclose(gallery.display_map(saliency.attribution, percentile=100), ramp / 15.0)
    assert images["img1"].shape == (4, 4, 3) and images["img1"][0, 0, 0] == 200
    assert gallery.find_image(tmp_path / "images", "img2") is None


def test_gallery_image_lookup_and_crop(tmp_path):
    from PIL import Image

    (tmp_path / "n01").mkdir()
    wide = np.zeros((40, 80, 3), np.uint8)
    wide[:, 10:70] = 255  # black bands of 10 columns at both ends
    Image.fromarray(wide).save(tmp_path / "n01" / "x.png")
    assert gallery.find_image(tmp_path, "n01/x") == tmp_path / "n01" / "x.png"
    assert gallery.find_image(tmp_path, "x") == tmp_path / "n01" / "x.png"
    # crop: 40×80 → 20×40, centre 20 columns = original columns 20..60, all white
    cropped = gallery.load_image(tmp_path / "n01" / "x.png", (20, 20), "crop")
    assert cropped.shape == (20, 20, 3) and cropped.min() > 250
    # squash keeps the whole width, so the black bands remain at the borders
    squashed = gallery.load_image(tmp_path / "n01" / "x.png", (20, 20), "squash")
    assert squashed[:, 0].max() < 10 and squashed[:, 10].min() > 250


def test_gallery_png_in_pipeline(tmp_path):
    folder = write_results(tmp_path / "r", [score_row("img1", "vgg16", "gradcam", "iou", 0.3)])
    write_store(
        folder / "attributions.h5", {("vgg16", "gradcam", "img1"): np.eye(8, dtype=np.float32)}
    )
    analyse([folder], tmp_path / "o", AnalysisOptions(gallery=2, report=False))
    assert (tmp_path / "o" / "plots" / "gallery_vgg16.png").stat().st_size > 1000


# ---------------------------------------------------------------- end to end, CLI, determinism


def synthetic_study(tmp_path: Path, variants=("rotate_15", "sharpen")) -> Path:
    """A results folder with localisation, faithfulness and ssim metrics, plus roar.csv."""
    rng = np.random.default_rng(1)
    rows = []
    for model, method, image in itertools.product(
        ["f20", "f60", "f100"], ["gradcam", "ig", "saliency"], range(4)
    ):
        conf = 0.5 + 0.12 * image
        rows.append(
            score_row(f"i{image}", model, method, "iou", float(rng.uniform()), confidence=conf)
        )
        rows.append(
            score_row(
                f"i{image}", model, method, "infidelity", float(rng.uniform()), confidence=conf
            )
        )
        for v in variants:
            rows.append(
                score_row(
                    f"i{image}", model, method, "ssim_augmentation", float(rng.uniform()), v, conf
                )
            )
    folder = write_results(tmp_path / "study", rows)
    roar_rows = [{"method": m, "fraction": f, "seed": s, "accuracy": float(rng.uniform(0.3, 0.9))}
                 for m in ("random", "ig") for f in (0.1, 0.5, 0.9) for s in range(3)]  # fmt: skip
    pd.DataFrame(roar_rows).to_csv(folder / "roar.csv", index=False)
    return folder


def load_cli():
    """The click command, loaded from cli/analyse_cmd.py whatever the package mapping."""
    spec = importlib.util.spec_from_file_location(
        "tfxai_cli_analyse_cmd", REPO / "cli" / "analyse_cmd.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.analyse


def test_cli_end_to_end_writes_everything(tmp_path):
    folder = synthetic_study(tmp_path)
    result = CliRunner().invoke(
        load_cli(),
        [str(folder), "--out", str(tmp_path / "out"), "--accuracy", "f20=0.5,f60=0.7,f100=0.9"],
    )
    assert result.exit_code == 0, result.output
    assert "reliability: iou:" in result.output and "Kendall's W" in result.output
    out = tmp_path / "out"
    for name in ("summary.csv", "summary_by_band.csv", "ssim_augmentation_groups.csv", "cost.csv",
                 "reliability.csv", "roar_summary.csv", "model_info.csv", "report.html"):  # fmt: skip
        assert (out / name).is_file(), name
    pngs = sorted(p.name for p in (out / "plots").glob("*.png"))
    assert {"bar_iou.png", "bar_infidelity.png", "bar_ssim_augmentation.png", "roar.png",
            "accuracy_iou.png"} <= set(pngs)  # fmt: skip
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(pngs)
    assert "<table" in html and "Kendall" in html and "tensorflow" in html
    assert "http://" not in html and "https://" not in html and "<script" not in html
    assert 'src="' not in html.replace('src="data:image/png;base64,', "")


def test_cli_usage_errors_exit_2_and_name_the_path(tmp_path):
    (tmp_path / "notresults").mkdir()
    result = CliRunner().invoke(load_cli(), [str(tmp_path / "notresults")])
    assert result.exit_code == 2
    assert "notresults" in result.output and "scores.csv" in result.output
    folder = write_results(tmp_path / "r", [score_row("a", "m", "g", "iou", 0.1)])
    bad = CliRunner().invoke(load_cli(), [str(folder), "--accuracy", "m=high"])
    assert bad.exit_code == 2 and "--accuracy" in bad.output
    bad = CliRunner().invoke(load_cli(), [str(folder), "--by", "colour"])
    assert bad.exit_code == 2 and "colour" in bad.output


def test_outputs_are_deterministic(tmp_path):
    folder = synthetic_study(tmp_path, variants=("sharpen",))
    for out in ("o1", "o2"):
        analyse(
            [folder],
            tmp_path / out,
            AnalysisOptions(accuracy={"f20": 0.5, "f60": 0.7, "f100": 0.9}),
        )
    for name in ("summary.csv", "reliability.csv", "report.html", "plots/bar_iou.png"):
        assert (tmp_path / "o1" / name).read_bytes() == (tmp_path / "o2" / name).read_bytes(), name


def test_gallery_from_results_attribution_store(tmp_path):
    results = pytest.importorskip("tfxai.results")
    if not hasattr(results, "AttributionStore"):
        pytest.skip("tfxai.results.AttributionStore is not available")
    folder = write_results(tmp_path / "r", [score_row("img/1", "vgg16", "gradcam", "iou", 0.3)])
    store = results.AttributionStore(folder / "attributions")
    maps = np.stack([np.eye(6, dtype=np.float32), 2 * np.eye(6, dtype=np.float32)])
    store.put("vgg16", "imagenet", "gradcam", "{}", ["img/1", "img2"], maps, [3, 4])
    store.put("vgg16", "imagenet", "saliency", "{}", ["img/1"], -maps[:1], [3])
    items, _ = gallery.collect(load_results([folder]).store_paths, 1)
    assert sorted((i.method, i.image_id) for i in items) == [
        ("gradcam", "img/1"),
        ("saliency", "img/1"),
    ]
    assert all(np.allclose(gallery.display_map(i.load()), np.eye(6)) for i in items)
    analyse([folder], tmp_path / "o", AnalysisOptions(gallery=1, report=False))
    assert (tmp_path / "o" / "plots" / "gallery_vgg16.png").is_file()


# ---------------------------------------------------------------- issue 19: a report that tells the truth


def test_bootstrap_ci_hand_computation():
    from tfxai.analysis import bootstrap_ci

    # the documented algorithm, done by hand with the same seed
    values = np.array([1.0, 2.0, 3.0, 4.0, 10.0])
    idx = np.random.default_rng(7).integers(0, 5, size=(1000, 5))
    expected = np.percentile(values[idx].mean(axis=1), [2.5, 97.5])
    low, high, n = bootstrap_ci(values, resamples=1000, level=0.95, seed=7)
    assert (low, high, n) == (pytest.approx(expected[0]), pytest.approx(expected[1]), 5)
    assert bootstrap_ci(values, seed=7) == bootstrap_ci(values, seed=7)  # seeded: reproducible
    # two images valued 0 and 1: resample means are 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4,
    # so the 2.5th and 97.5th percentiles of 1000 resamples are 0 and 1
    assert bootstrap_ci([0.0, 1.0], seed=0)[:2] == (0.0, 1.0)
    # over images, not rows: image a has values 1 and 3 (sum 4, 2 values), image b has 5.
    # resamples {a,a} → 8/4 = 2, {a,b} → 9/3 = 3, {b,b} → 5: the interval is [2, 5]
    assert bootstrap_ci([1.0, 3.0, 5.0], ["a", "a", "b"], seed=0)[:2] == (2.0, 5.0)
    constant = bootstrap_ci([0.4, 0.4, 0.4, np.nan])
    assert constant == (pytest.approx(0.4), pytest.approx(0.4), 3)
    one = bootstrap_ci([0.3, np.nan])
    assert math.isnan(one[0]) and math.isnan(one[1]) and one[2] == 1


def test_summary_has_seeded_intervals_next_to_the_mean(tmp_path):
    from tfxai.analysis import Bootstrap, bootstrap_ci

    values = [0.1, 0.5, 0.2, 0.9, float("nan")]
    rows = [score_row(f"i{k}", "m", "gradcam", "iou", v) for k, v in enumerate(values)]
    folder = write_results(tmp_path / "r", rows)
    options = AnalysisOptions(plots=False, report=False, bootstrap=Bootstrap(500, 0.9, 3))
    analyse([folder], tmp_path / "o", options)
    table = pd.read_csv(tmp_path / "o" / "summary.csv").iloc[0]
    low, high, n = bootstrap_ci(values, [f"i{k}" for k in range(5)], 500, 0.9, 3)
    assert table["ci_low"] == pytest.approx(low) and table["ci_high"] == pytest.approx(high)
    assert table["n"] == n == 4 and table["count"] == 4 and table["nan_count"] == 1
    assert table["ci_low"] <= table["mean"] <= table["ci_high"]
    assert table["direction"] == "higher" and bool(table["comparable"]) is True


def ranking_rows(metric: str, per_method: dict[str, list[float]], params: str = "{}") -> list[dict]:
    rows = []
    for method, values in per_method.items():
        for k, v in enumerate(values):
            row = score_row(f"i{k}", "m", method, metric, v)
            row["metric_params"] = params
            rows.append(row)
    return rows


def test_ties_are_shown_as_ties_never_won_by_the_first_name(tmp_path):
    rows = (
        # exactly equal: a tie, whatever the order of the names
        ranking_rows("iou", {"zeta": [0.2, 0.4, 0.6], "alpha": [0.2, 0.4, 0.6], "mid": [0.0, 0.01, 0.02]})
        # overlapping intervals: 0.52 lies inside b's interval → tie
        + ranking_rows("pointing_game", {"a": [0.5, 0.52, 0.54], "b": [0.3, 0.55, 0.8]})
        # a clear winner that is not the first name
        + ranking_rows("energy_pointing_game", {"a": [0.1, 0.11, 0.12], "b": [0.8, 0.81, 0.82]})
        # lower is better: the smallest mean wins
        + ranking_rows("deletion", {"a": [0.1, 0.11, 0.12], "b": [0.8, 0.81, 0.82]})
    )  # fmt: skip
    result = analyse([write_results(tmp_path / "r", rows)], tmp_path / "o",
                     AnalysisOptions(plots=False))  # fmt: skip
    table = result.tables["ranking"].set_index("metric")
    assert table.loc["iou", "best"] == "tie: alpha, zeta" and table.loc["iou", "status"] == "tie"
    assert table.loc["pointing_game", "best"] == "tie: a, b"
    assert table.loc["energy_pointing_game", "best"] == "b"
    assert table.loc["deletion", "best"] == "a"
    html = (tmp_path / "o" / "report.html").read_text()
    assert "tie: alpha, zeta" in html
    # both tied cells are highlighted, not only the first
    iou_row = next(r for r in html.split("<tr>") if r.startswith("<td>iou</td>"))
    assert iou_row.count('class="best"') == 2


def test_metric_not_comparable_across_methods_is_never_ranked(tmp_path):
    raw = json.dumps({"n_samples": 50, "normalize": False, "seed": 0, "sigma": 0.003})
    rows = ranking_rows("infidelity", {"gradcam": [9000.0, 9100.0, 9200.0],
                                       "saliency": [0.09, 0.1, 0.11]}, raw)  # fmt: skip
    rows += ranking_rows("max_sensitivity", {"gradcam": [5.0, 5.1, 5.2], "saliency": [0.1, 0.2, 0.3]})
    for row in ranking_rows("max_sensitivity", {"gradcam": [0.1, 0.11, 0.12], "saliency": [0.5, 0.6, 0.7]}):
        rows.append({**row, "variant": "relative"})
    rows += ranking_rows("iou", {"gradcam": [0.5, 0.6, 0.7], "saliency": [0.1, 0.15, 0.2]})
    result = analyse([write_results(tmp_path / "r", rows)], tmp_path / "o", AnalysisOptions())
    table = result.tables["ranking"].set_index(["metric", "variant"])
    for key in (("infidelity", ""), ("max_sensitivity", "")):
        assert table.loc[key, "best"] == "" and table.loc[key, "status"] == "not comparable"
        assert not table.loc[key, "comparable"]
    assert "normalize=false" in table.loc[("infidelity", ""), "reason"]
    assert table.loc[("max_sensitivity", "relative"), "best"] == "gradcam"
    assert table.loc[("iou", ""), "best"] == "gradcam"
    summary_csv = pd.read_csv(tmp_path / "o" / "summary.csv", keep_default_na=False)
    assert set(summary_csv.loc[summary_csv["metric"] == "infidelity", "comparable"]) == {False}
    html = (tmp_path / "o" / "report.html").read_text()
    assert "Not comparable across methods, so shown but never ranked: infidelity (normalize=false" in html
    infidelity_row = next(r for r in html.split("<tr>") if r.startswith("<td>infidelity</td>"))
    assert 'class="best"' not in infidelity_row and "not ranked" in infidelity_row
    assert "9.1e+03" in infidelity_row  # the values are still shown
    # the bar chart says so in the panel
    figure = plots_module().bar_chart(
        result.tables["summary"], "infidelity", {"": "lower"}, {"": "normalize=false: raw"}
    )
    assert "NOT COMPARABLE ACROSS METHODS" in figure.axes[0].get_title()


def plots_module():
    from tfxai.analysis import plots

    return plots


def test_undefined_values_are_counted_with_their_reasons(tmp_path):
    rows = []
    notes = ["gated out: |ΔP| = 0.123 ≥ 0.05", "gated out: |ΔP| = 0.071 ≥ 0.05", "", "no boxes"]
    values = [float("nan"), float("nan"), 0.7, float("nan")]
    for k, (value, note) in enumerate(zip(values, notes, strict=True)):
        row = score_row(f"i{k}", "m", "gradcam", "ssim_augmentation", value, variant="rotate_15")
        rows.append({**row, "note": note})
    rows.append({**score_row("i0", "m", "gradcam", "iou", float("nan")), "note": ""})
    rows.append(score_row("i1", "m", "gradcam", "iou", 0.4))
    result = analyse([write_results(tmp_path / "r", rows)], tmp_path / "o", AnalysisOptions(plots=False))
    table = result.tables["undefined"].set_index("metric")
    assert table.loc["ssim_augmentation", "undefined"] == 3
    assert table.loc["ssim_augmentation", "rows"] == 4
    assert table.loc["ssim_augmentation", "share"] == pytest.approx(0.75)
    assert table.loc["ssim_augmentation", "reasons"] == "2 gated out (|ΔP| ≥ 0.05); 1 no boxes"
    assert table.loc["iou", "reasons"] == "1 no reason recorded"
    assert ("Undefined values: ssim_augmentation: 3 of 4 values undefined (75%): "
            "2 gated out (|ΔP| ≥ 0.05); 1 no boxes") in result.notes  # fmt: skip
    html = (tmp_path / "o" / "report.html").read_text()
    assert 'class="loud"' in html and "2 gated out (|ΔP| ≥ 0.05)" in html


def test_error_bars_stay_in_range_and_out_of_range_values_are_reported(tmp_path):
    from tfxai.analysis import plots

    # pointing game: 0/1 per image with a mean near 1 (the old bars went to 1.2)
    rows = ranking_rows("pointing_game", {"a": [1.0, 1.0, 1.0, 0.0, 1.0, 1.0], "b": [0.0, 1.0, 0.0, 1.0, 1.0, 0.0]})
    rows += ranking_rows("iou", {"a": [0.5, 1.2, 0.4]})  # 1.2 is outside [0, 1]
    result = analyse([write_results(tmp_path / "r", rows)], tmp_path / "o", AnalysisOptions())
    summary = result.tables["summary"]
    game = summary[summary["metric"] == "pointing_game"]
    assert (game["ci_low"] >= 0).all() and (game["ci_high"] <= 1).all()
    figure = plots.bar_chart(summary, "pointing_game", "higher")
    axes = figure.axes[0]
    ends = [seg[:, 1] for c in axes.collections for seg in c.get_segments()]
    assert ends and all(((e >= 0) & (e <= 1)).all() for e in ends)
    assert axes.get_ylim()[1] <= 1.05
    iou = summary[summary["metric"] == "iou"].iloc[0]
    assert iou["out_of_range"] == 1 and iou["mean"] == pytest.approx(0.7)  # nothing clipped
    assert any("iou: 1 value(s) lie outside its range [0, 1]" in n for n in result.notes)
    title = plots.bar_chart(summary, "iou", "higher").axes[0].get_title()
    assert "1 value(s) outside [0, 1] (not clipped)" in title


def test_empty_panels_say_no_data(tmp_path):
    from tfxai.analysis import plots

    rows = [score_row(f"i{k}", "m", "g", "iou", float("nan")) for k in range(3)]
    result = analyse([write_results(tmp_path / "r", rows)], tmp_path / "o", AnalysisOptions())
    figure = plots.bar_chart(result.tables["summary"], "iou", "higher")
    texts = [t.get_text() for a in figure.axes for t in a.texts]
    assert texts == ["no data: all 3 values undefined"]
    empty = plots.roar_plot(pd.DataFrame(columns=["method", "fraction", "mean", "std_sample"]))
    assert [t.get_text() for a in empty.axes for t in a.texts] == ["ROAR: no data"]


def test_reliability_says_what_is_missing_and_what_a_verdict_means(tmp_path):
    rows = ranking_rows("iou", {"a": [0.1, 0.2], "b": [0.5, 0.6]})
    result = analyse([write_results(tmp_path / "r", rows)], tmp_path / "o", AnalysisOptions())
    row = reliability.verdicts(result.tables["reliability"]).iloc[0]
    assert row["verdict"] == "insufficient data" and row["best_method"] == ""
    assert row["reason"] == "needs at least two models of one architecture; these results have one model (m)"
    html = (tmp_path / "o" / "report.html").read_text()
    assert "Not tested (iou): needs at least two models of one architecture" in html
    # two models, one method: the other thing that can be missing
    rows = [score_row("i0", m, "a", "iou", 0.3) for m in ("m1", "m2")]
    result = analyse([write_results(tmp_path / "r2", rows)], tmp_path / "o2", AnalysisOptions(plots=False))
    row = reliability.verdicts(result.tables["reliability"]).iloc[0]
    assert row["reason"] == "needs at least two methods with a value in every model; found one method (a)"
    # with data: one line says what the verdict means
    folder = reliability_folder(tmp_path)
    analyse([folder], tmp_path / "o3", AnalysisOptions(accuracy=dict(ACCURACY), plots=False))
    html = (tmp_path / "o3" / "report.html").read_text()
    assert "reliable (max_sensitivity [relative]): the methods came out in the same order" in html
    assert "unreliable (infidelity): the order of the methods changed between models" in html


def test_cost_says_when_seconds_are_batch_means():
    per_image = [score_row(i, "m", "ig", "iou", 0.1, seconds=s) for i, s in (("a", 1.5), ("b", 2.5))]
    batch = [score_row(i, "m", "gc", "iou", 0.1, seconds=0.7) for i in ("a", "b", "c")]
    batch += [score_row("d", "m", "gc", "iou", 0.1, seconds=0.9)]
    table = cost.cost_table(pd.DataFrame(per_image + batch).assign(model_id="m", run="r"))
    timing = table.set_index("method")["timing"]
    assert timing["ig"] == "per image"
    assert timing["gc"] == "batch mean (2 values over 4 images)"


def test_metric_directions_come_from_the_metadata_table():
    from tfxai import metadata

    assert metric_direction("road", "lerf").higher_is_better
    assert not metric_direction("road", "morf").higher_is_better
    assert metric_direction("model_randomisation", "spearman@dense").direction == "lower"
    assert metric_direction("iou").source == "tfxai.metadata"
    for name, meta in metadata.METRICS.items():
        assert metric_direction(name).direction == meta.direction


def write_gallery_case(tmp_path: Path) -> Path:
    """A results folder with a store (gradcam and integrated gradients of one 64×48 image), the
    image with a VOC box, predictions with an ImageNet label, and runs.jsonl naming the folders."""
    from PIL import Image

    data = tmp_path / "data"
    data.mkdir()
    Image.fromarray(np.full((96, 128, 3), 128, np.uint8)).save(data / "fish.png")  # W 128, H 96
    (data / "fish.xml").write_text(
        "<annotation><size><width>128</width><height>96</height></size><object><name>n01440764</name>"
        "<bndbox><xmin>33</xmin><ymin>25</ymin><xmax>96</xmax><ymax>72</ymax></bndbox></object>"
        "</annotation>"
    )
    folder = write_results(tmp_path / "r", [score_row("fish", "vgg16", "gradcam", "iou", 0.3)],
                           [{"image_id": "fish", "model": "vgg16", "weights": "imagenet", "label": 0,
                             "predicted": 1, "confidence": 0.62, "correct": False}])  # fmt: skip
    signed = np.zeros((48, 64, 3), np.float32)
    signed[10:20, 10:20] = 1.0
    signed[30:40, 40:50] = -1.0
    write_store(folder / "attributions.h5", {("vgg16", "gradcam", "fish"): np.ones((48, 64), np.float32),
                                             ("vgg16", "integrated_gradients", "fish"): signed})  # fmt: skip
    (folder / "runs.jsonl").write_text(json.dumps({"command": "evaluate", "images": str(data),
                                                   "annotations": None, "resize": "squash"}) + "\n")
    return folder


def test_gallery_draws_boxes_classes_and_is_on_by_default(tmp_path):
    from PIL import Image

    from tfxai.analysis import plots

    folder = write_gallery_case(tmp_path)
    result = analyse([folder], tmp_path / "o", AnalysisOptions(report=False))
    png = tmp_path / "o" / "plots" / "gallery_vgg16.png"
    assert png in result.files  # on by default: the image folder is known from runs.jsonl
    # the box: VOC (33, 25)-(96, 72) 1-based inclusive on 128×96 → (32, 24, 96, 72) half-open → ×0.5
    loaded = load_results([folder])
    data = gallery.collect_all(loaded.store_paths, 1, [tmp_path / "data"],
                               predictions=loaded.predictions, scores=loaded.scores)  # fmt: skip
    assert np.allclose(data.boxes["fish"], [[16, 12, 48, 36]])
    caption = data.captions[("vgg16", "fish")]
    assert (caption.label_name, caption.predicted_name, caption.correct) == ("tench", "goldfish", False)
    pixels = np.asarray(Image.open(png).convert("RGB")).astype(int)
    green = (pixels[..., 1] > 200) & (pixels[..., 0] < 80) & (pixels[..., 2] < 80)
    assert green.sum() > 100  # box outlines in pure green on three panels
    wrong = (pixels[..., 0] > 180) & (pixels[..., 1] < 70) & (pixels[..., 2] < 80)
    assert wrong.sum() > 20  # the red "✗" caption and the signed map's positive evidence
    figure = plots.gallery_figure(data.items, data.images, "vgg16", boxes=data.boxes,
                                  captions=data.captions)  # fmt: skip
    texts = " | ".join(t for a in figure.axes for t in (a.get_title(loc="left"), a.get_xlabel(),
                                                         a.get_title()))  # fmt: skip
    assert "true: tench" in texts and "pred: goldfish ✗ p=0.62" in texts
    assert "explained: goldfish" in texts  # the stored target (1)
    assert "99th percentile" in figure.get_suptitle()
    # one colour bar per method, labelled with how its maps are drawn
    assert "heat, scaled to max" in texts and "signed; p = 99th pct of |value|" in texts
    # no gallery when asked not to
    off = analyse([folder], tmp_path / "off", AnalysisOptions(report=False, gallery=0))
    assert not any("gallery" in p.name for p in off.files)


def test_gallery_display_kinds_and_percentile_clip():
    rng = np.random.default_rng(0)
    signed = rng.normal(size=(20, 20, 3)).astype(np.float32)
    assert gallery.display_kind("integrated_gradients", [signed]) == gallery.SIGNED
    assert gallery.display_kind("saliency", [signed]) == gallery.MAGNITUDE
    assert gallery.display_kind("gradcam", [np.abs(signed)]) == gallery.CAM
    assert gallery.display_kind("deeplift+smoothgrad_sq", [signed]) == gallery.MAGNITUDE
    assert gallery.display_kind("lrp_epsilon", [np.abs(signed)]) == gallery.MAGNITUDE
    values = gallery.signed_map(signed)
    summed = signed.sum(axis=-1)
    peak = np.percentile(np.abs(summed), 99)
    assert values.min() == -1.0 and values.max() == 1.0
    inside = np.abs(summed) < peak
    assert np.allclose(values[inside], summed[inside] / peak)


def test_analysis_and_analyse_command_do_not_import_tensorflow(tmp_path):
    import subprocess
    import sys

    folder = write_gallery_case(tmp_path)
    code = (
        "import sys\n"
        "from tfxai.analysis import analyse, AnalysisOptions\n"
        f"analyse([{str(folder)!r}], {str(tmp_path / 'o')!r}, AnalysisOptions())\n"
        "from tfxai.cli.main import main\n"
        f"main(['analyse', {str(folder)!r}, '--out', {str(tmp_path / 'o2')!r}], standalone_mode=False)\n"
        "import tfxai.metadata\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          check=False)  # fmt: skip
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-2000:]
    assert (tmp_path / "o2" / "report.html").is_file()


def test_cli_gallery_switch_and_bootstrap_options(tmp_path):
    folder = write_gallery_case(tmp_path)
    result = CliRunner().invoke(load_cli(), [str(folder), "--out", str(tmp_path / "o"), "--no-gallery",
                                             "--bootstrap", "200", "--seed", "5"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "o" / "plots" / "gallery_vgg16.png").exists()
    assert "200 resamples over images" in (tmp_path / "o" / "report.html").read_text()
    assert "reliability: not tested (iou): needs at least two models" in result.output
    bad = CliRunner().invoke(load_cli(), [str(folder), "--no-gallery", "--gallery", "2"])
    assert bad.exit_code == 2
