"""One parameter vocabulary (n_samples, sigma, fill): aliases accepted, canonical names recorded,
old results folders migrated (resume, attribution store, analysis)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import tfxai
from tfxai.attribution.base import METHODS, TUNNELS
from tfxai.evaluation.base import METRICS
from tfxai.params import canonical_params
from tfxai.vocabulary import ALIASES, VOCABULARY, migrate_params_json, migrate_row


@pytest.fixture(scope="module")
def tiny_bb(tiny_cnn_file):
    return tfxai.load_model(str(tiny_cnn_file), output="logits")


def _spec(owner: str) -> dict:
    tfxai.list_methods(), tfxai.list_metrics()  # registries loaded
    cls = METHODS.get(owner) or TUNNELS.get(owner) or METRICS.get(owner)
    assert cls is not None, f"alias table names {owner!r}, which is no method, tunnel or metric"
    return cls.params_spec


@pytest.mark.parametrize("owner", sorted(ALIASES))
def test_every_alias_names_a_declared_canonical_parameter(owner):
    spec = _spec(owner)
    for alias, canonical in ALIASES[owner].items():
        assert canonical in spec, f"{owner}: alias {alias} → {canonical}, not a parameter"
        assert canonical in VOCABULARY
        assert alias not in spec, f"{owner}: {alias} is both an alias and a parameter"


def test_one_name_per_meaning_across_methods_and_metrics():
    """No declared parameter still uses a name the vocabulary replaced."""
    tfxai.list_methods(), tfxai.list_metrics()
    old = {a for table in ALIASES.values() for a in table}
    for name, cls in {**METHODS, **TUNNELS, **METRICS}.items():
        assert not old & set(cls.params_spec), f"{name} declares an old name"
    fills = [cls.params_spec["fill"].choices for cls in {**METHODS, **METRICS}.values()
             if "fill" in cls.params_spec]
    assert len(fills) >= 3 and all(set(c) == {"zero", "mean", "blur"} for c in fills)


def test_aliases_build_the_same_method_and_record_canonical_names(tiny_bb):
    a = tfxai.get_attributer("lime", tiny_bb, num_samples=40, hide_color=0)
    b = tfxai.get_attributer("lime", tiny_bb, n_samples=40, fill="zero")
    assert a.method_params_json() == b.method_params_json()
    recorded = json.loads(a.method_params_json())
    assert recorded["n_samples"] == 40 and recorded["fill"] == "zero"
    assert "num_samples" not in recorded and "hide_color" not in recorded
    m = tfxai.get_metric("infidelity", n_perturbations=7)
    assert m.metric_params()["n_samples"] == 7
    t = tfxai.get_attributer("saliency+smoothgrad", tiny_bb, n=3, stdevs=0.1)
    assert t.params["n_samples"] == 3 and t.params["sigma"] == 0.1


def test_a_parameter_under_two_names_is_refused(tiny_bb):
    with pytest.raises(ValueError, match="'num_samples' and 'n_samples' are the same"):
        tfxai.get_attributer("lime", tiny_bb, num_samples=10, n_samples=20)
    with pytest.raises(ValueError, match="also accepted: n_perturb_samples → n_samples"):
        tfxai.get_metric("infidelity", n_perturbatons=7)  # typo: the error lists the aliases


def test_tunnel_and_inner_method_each_keep_their_n_samples(tiny_bb):
    att = tfxai.get_attributer("gradient_shap+smoothgrad", tiny_bb, n_samples=3, sigma=0.1,
                               inner={"n_samples": 2, "sigma": 0.05})
    assert (att.params["n_samples"], att.params["sigma"]) == (3, 0.1)
    assert (att.inner.params["n_samples"], att.inner.params["sigma"]) == (2, 0.05)


OLD = [
    ("shap", '{"background_size":50,"explainer":"gradient","nsamples":200,"seed":0}',
     '{"background_size":50,"explainer":"gradient","n_samples":200,"seed":0}'),
    ("lime", '{"hide_color":"0","num_samples":1000,"seed":0}',
     '{"fill":"zero","n_samples":1000,"seed":0}'),
    ("occlusion", '{"fill":"0","patch":16}', '{"fill":"zero","patch":16}'),
    ("gradient_shap+vargrad", '{"inner":{"noise":0.0,"samples":5},"n":4,"seed":0,"sigma":0.15}',
     '{"inner":{"n_samples":5,"sigma":0.0},"n_samples":4,"seed":0,"sigma":0.15}'),
    ("infidelity", '{"n_perturbations":50,"normalize":false,"sigma":0.003}',
     '{"n_samples":50,"normalize":false,"sigma":0.003}'),
    ("road", '{"noise_std":0.01,"percentages":[10,50]}', '{"percentages":[10,50],"sigma":0.01}'),
]


@pytest.mark.parametrize("owner, old, new", OLD)
def test_recorded_strings_of_old_folders_are_migrated(owner, old, new):
    assert migrate_params_json(owner, old) == new
    # the migrated string is the canonical JSON a new run records for those parameters
    assert new == canonical_params(json.loads(new))
    assert migrate_params_json(owner, new) == new
    # a method that has no such alias keeps the name
    assert migrate_params_json("saliency", '{"n":3}') == '{"n":3}'


def test_migrate_row_touches_only_params_columns():
    row = {"method": "lime", "method_params": OLD[1][1], "metric": "infidelity",
           "metric_params": OLD[4][1], "value": "0.5"}
    out = migrate_row(row)
    assert out["method_params"] == OLD[1][2] and out["metric_params"] == OLD[4][2]
    assert out["value"] == "0.5" and row["method_params"] == OLD[1][1]
    same = {"method": "saliency", "method_params": "{}", "metric": "iou", "metric_params": "{}"}
    assert migrate_row(same) is same


def _to_old_names(out: Path) -> None:
    """Rewrite a results folder as tfxai 0.x wrote it: old names in the store's part files (and
    their folder hash) and in scores.csv."""
    import h5py

    from tfxai.results import params_hash

    renames = {'"n_samples":20,': '"num_samples":20,', '"fill":"zero"': '"hide_color":"0"'}
    for part in sorted((out / "attributions").rglob("part-*.h5")):
        with h5py.File(part, "r+") as f:
            text = str(f.attrs["method_params"])
            for new, old in renames.items():
                text = text.replace(new, old)
            f.attrs["method_params"] = text
        dest = part.parent.parent / params_hash(text) / part.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        part.rename(dest)
    scores = (out / "scores.csv").read_text()
    scores = scores.replace('""n_samples"":4', '""n_perturbations"":4')
    for new, old in renames.items():
        scores = scores.replace(new.replace('"', '""'), old.replace('"', '""'))
    assert "num_samples" in scores and "n_perturbations" in scores
    (out / "scores.csv").write_text(scores)


def _run(command: str, model: Path, images: Path, out: Path, *params: str) -> str:
    from click.testing import CliRunner
    from tfxai.cli.main import main

    args = [command, "--model", str(model), "--method", "lime", "--images", str(images),
            "--out", str(out), "--no-progress", "--batch-size", "3"]
    if command == "evaluate":
        args += ["--metric", "infidelity"]
    for p in params:
        args += ["--param", p]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    return res.output


def test_old_folder_resumes_without_recomputing(tiny_cnn_file, image_dir, tmp_path):
    """A folder written with tfxai 0.x names resumes: nothing is recomputed, no row is written
    twice, and the analysis shows one setting, in today's names."""
    from tfxai.analysis.loading import load_results

    out = tmp_path / "run"
    _run("evaluate", tiny_cnn_file, image_dir, out, "lime.n_samples=20", "infidelity.n_samples=4")
    rows = (out / "scores.csv").read_text().count("\n")
    _to_old_names(out)
    again = _run("evaluate", tiny_cnn_file, image_dir, out, "lime.num_samples=20",
                 "infidelity.n_perturbations=4")
    assert "0 attributions computed" in again, again
    # the attribution store's old parts are found too (attribute reads only the store)
    stored = _run("attribute", tiny_cnn_file, image_dir, out, "lime.hide_color=0",
                  "lime.n_samples=20")
    assert "0 attributions computed, 6 reused" in stored, stored
    assert (out / "scores.csv").read_text().count("\n") == rows
    scores = load_results([out]).scores
    assert len(scores) == rows - 1
    (method_params,), (metric_params,) = set(scores["method_params"]), set(scores["metric_params"])
    assert json.loads(method_params)["n_samples"] == 20 and '"fill":"zero"' in method_params
    assert json.loads(metric_params)["n_samples"] == 4 and "n_perturbations" not in metric_params
