"""tfxai.metadata is the one source of truth of metric directions and comparability (issue 19)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import tfxai
from tfxai import metadata
from tfxai.analysis.directions import metric_direction
from tfxai.evaluation.base import METRICS
from tfxai.evaluation.registry import metric_info


def test_every_registered_metric_has_an_entry():
    names = tfxai.list_metrics()
    assert names and set(names) <= set(metadata.METRICS)
    for name in names:
        meta = metadata.METRICS[name]
        assert meta.name == name and meta.implemented
        assert meta.direction in ("higher", "lower")
        assert meta.scale in ("invariant", "normalize", "relative")
        low, high = meta.value_range
        assert low < high
        assert meta.why, f"{name}: say why it is (not) comparable"


@pytest.mark.parametrize("name", sorted(METRICS))
def test_every_metric_takes_its_facts_from_the_table(name):
    """A registered metric has an entry in tfxai.metadata (a new metric without one fails here)
    and its class attributes are the table's, set by register_metric."""
    cls = METRICS[name]
    meta = metadata.METRICS[name]
    assert (cls.family, cls.direction) == (meta.family, meta.direction)
    assert cls.variant_directions == dict(meta.variant_directions)
    for variant in cls.variants:
        assert meta.direction_for(variant) in ("higher", "lower")


def test_directions_per_variant():
    assert metadata.direction("road", "morf") == "lower"
    assert metadata.direction("road", "lerf") == "higher"
    assert metadata.direction("confidence_drop", "b") == "lower"
    assert metadata.direction("confidence_drop", "s") == "higher"
    assert metadata.direction("confidence_increase", "b") == "higher"
    assert metadata.direction("confidence_increase", "s") == "lower"
    assert metadata.direction("model_randomisation", "spearman@block5_conv3") == "lower"
    assert metadata.direction("model_randomisation", "ssim@predictions") == "lower"
    assert metadata.direction("not_a_metric") is None
    # the analyser reads the same table
    assert metric_direction("road", "lerf").higher_is_better
    assert not metric_direction("road", "morf").higher_is_better


def test_comparability_follows_the_recorded_parameters():
    normalised = json.dumps({"n_samples": 50, "normalize": True, "sigma": 0.003})
    raw = json.dumps({"n_samples": 50, "normalize": False, "sigma": 0.003})
    assert metadata.comparability("infidelity", normalised)
    assert not metadata.comparability("infidelity", raw)
    assert not metadata.comparability("infidelity", "{}")  # not recorded: not assumed comparable
    assert not metadata.comparability("infidelity", None)
    assert metadata.comparability("infidelity", {"normalize": "true"})
    assert not metadata.comparability("max_sensitivity", "{}", "")
    assert metadata.comparability("max_sensitivity", "{}", "relative")
    assert metadata.comparability("avg_sensitivity", {"relative": True}, "")
    for name in ("iou", "pointing_game", "ssim_augmentation", "road", "deletion", "insertion",
                 "box_iou", "confidence_drop", "model_randomisation"):  # fmt: skip
        assert metadata.comparability(name, "{}"), name
    assert not metadata.comparability("made_up", "{}")


def test_metric_info_and_tfxai_metrics_read_the_table():
    info = {r["name"]: r for r in metric_info()}
    assert info["road"]["directions"] == {"morf": "lower", "lerf": "higher"}
    assert info["road"]["direction"] == "morf lower, lerf higher"
    assert info["infidelity"]["comparable"] == "if normalize"
    assert info["iou"]["direction"] == "higher" and info["iou"]["comparable"] == "yes"
    from tfxai.cli.main import main

    result = CliRunner().invoke(main, ["metrics"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    at = next(k for k, line in enumerate(lines) if line.startswith("road "))
    assert "morf lower" in lines[at] and "lerf higher" in lines[at + 1]  # one line per variant
    infidelity = next(line for line in lines if line.startswith("infidelity "))
    assert "if normalize" in infidelity


def test_run_records_the_metric_facts(tiny_cnn_file, image_dir, tmp_path):
    """runs.jsonl carries each metric's family and directions with the results."""
    import json

    from click.testing import CliRunner
    from tfxai.cli.main import main

    out = tmp_path / "r"
    res = CliRunner().invoke(main, [
        "evaluate", "--model", str(tiny_cnn_file), "--images", str(image_dir), "--method",
        "saliency", "--metric", "road,iou", "--param", "road.percentages=[50]",
        "--out", str(out), "--no-progress"])
    assert res.exit_code == 0, res.output
    run = json.loads((out / "runs.jsonl").read_text().splitlines()[0])
    assert run["metric_meta"]["road"] == {"family": "faithfulness", "direction": "lower",
                                          "variant_directions": {"morf": "lower",
                                                                 "lerf": "higher"}}
    assert run["metric_meta"]["iou"]["direction"] == "higher"
