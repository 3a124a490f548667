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
def test_table_agrees_with_the_metric_classes(name):
    cls = METRICS[name]
    meta = metadata.METRICS[name]
    assert meta.family == cls.family
    assert meta.direction == cls.direction
    for variant, direction in getattr(cls, "variant_directions", {}).items():
        assert meta.direction_for(variant) == direction, (name, variant)
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
    normalised = json.dumps({"n_perturbations": 50, "normalize": True, "sigma": 0.003})
    raw = json.dumps({"n_perturbations": 50, "normalize": False, "sigma": 0.003})
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
