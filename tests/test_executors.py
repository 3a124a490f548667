"""Executors and sharding: Ray vs local, a Ray worker that dies, --shard + merge, no retracing.

The Ray tests start one local 2-CPU cluster for the module and are skipped when Ray is absent
(``pip install '.[ray]'``).
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import write_boxed_images
from tfxai.cli.main import main

from tfxai.pipeline import RunConfig, Session, run_local
from tfxai.results import PREDICTION_KEY, SCORE_KEY, AttributionStore, merge_results
from tfxai.run import run_attribute, run_evaluate

METHODS = ["gradcam", "saliency+smoothgrad"]
METRICS = ["iou", "box_iou"]
N_IMAGES = 12


def _rows(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open() as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """Twelve 32×32 PNGs with one VOC box each (12×14 px at a random corner)."""

    def box(rng: np.random.Generator) -> tuple[int, int, int, int]:
        x0, y0 = (int(v) for v in rng.integers(1, 16, 2))
        return x0, y0, x0 + 12, y0 + 14

    return write_boxed_images(tmp_path_factory.mktemp("exec_images"), N_IMAGES, seed=3, box=box,
                              stem="im{i:02d}")


def _cfg(model: Path, images: Path, out: Path, **kw) -> RunConfig:
    base = dict(models=[str(model)], methods=METHODS, metrics=METRICS, images=images,
                annotations=images, out=out, batch_size=4, seed=7, progress=False,
                method_params={"saliency+smoothgrad": {"n_samples": 3}})
    return RunConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def local_run(tiny_cnn_file, images, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("local") / "r"
    summary = run_evaluate(_cfg(tiny_cnn_file, images, out))
    assert not summary.interrupted and summary.errors == 0
    return out


def _score_table(folder: Path) -> dict[tuple[str, ...], float]:
    rows = _rows(folder / "scores.csv")
    table = {tuple(r[c] for c in (*SCORE_KEY, "variant")): float(r["value"]) for r in rows}
    assert len(table) == len(rows), "duplicate score rows"
    return table


def assert_same_results(a: Path, b: Path) -> None:
    """Same score keys with equal values, same predictions, same attributions (no duplicates)."""
    sa, sb = _score_table(a), _score_table(b)
    assert sa.keys() == sb.keys()
    assert len(sa) == N_IMAGES * len(METHODS) * 3  # iou + box_iou ("", "hit")
    for key, va in sa.items():
        vb = sb[key]
        assert (math.isnan(va) and math.isnan(vb)) or va == pytest.approx(vb, rel=1e-5,
                                                                           abs=1e-6), key
    pa = {tuple(r[c] for c in PREDICTION_KEY): r["predicted"] for r in _rows(a / "predictions.csv")}
    pb = [r for r in _rows(b / "predictions.csv")]
    assert len(pb) == N_IMAGES and pa == {tuple(r[c] for c in PREDICTION_KEY): r["predicted"]
                                          for r in pb}
    ia, ib = AttributionStore(a / "attributions"), AttributionStore(b / "attributions")
    ka, kb = ia.index(), ib.index()
    assert ka.keys() == kb.keys() and len(ka) == N_IMAGES * len(METHODS)
    for method in {k[2] for k in ka}:
        keys = sorted(k for k in ka if k[2] == method)
        assert all(ka[k].target == kb[k].target for k in keys)
        xa = ia.load_many([ka[k] for k in keys])
        xb = ib.load_many([kb[k] for k in keys])
        np.testing.assert_allclose(xa, xb, rtol=1e-4, atol=1e-6, err_msg=method)


# --------------------------------------------------------------------------------------- no Ray


def test_shard_then_merge_equals_unsharded(tiny_cnn_file, images, local_run, tmp_path):
    runner = CliRunner()
    parts = []
    for i in range(2):
        out = tmp_path / f"s{i}"
        args = ["evaluate", "--model", str(tiny_cnn_file), "--method", ",".join(METHODS),
                "--metric", ",".join(METRICS), "--images", str(images), "--annotations",
                str(images), "--out", str(out), "--batch-size", "4", "--seed", "7",
                "--param", "saliency+smoothgrad.n_samples=3", "--shard", f"{i}/2", "--no-progress"]
        res = runner.invoke(main, args)
        assert res.exit_code == 0, res.output
        parts.append(out)
    n0, n1 = (len(_rows(p / "predictions.csv")) for p in parts)
    assert n0 + n1 == N_IMAGES and n0 > 0 and n1 > 0
    merged = tmp_path / "merged"
    res = runner.invoke(main, ["merge", *map(str, parts), "--out", str(merged)])
    assert res.exit_code == 0, res.output
    assert_same_results(local_run, merged)
    # merging again (or merging the unsharded run in) adds nothing
    again = merge_results([*parts, local_run], merged)
    assert sum(again.rows.values()) == 0 and again.attributions == 0
    assert_same_results(local_run, merged)
    assert len((merged / "runs.jsonl").read_text().splitlines()) == 3  # 2 shards + local


def test_merge_usage_errors(tmp_path):
    res = CliRunner().invoke(main, ["merge", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "is not a results folder" in res.output
    (tmp_path / "o").mkdir()
    res = CliRunner().invoke(main, ["merge", str(tmp_path / "o"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "is the destination itself" in res.output


def test_compiled_functions_are_traced_once(tiny_cnn_file, images, tmp_path):
    """Batches of varying size (5, 5, 2) reuse the attributers' and the model's tf.functions."""
    cfg = RunConfig(models=[str(tiny_cnn_file)], methods=["gradcam", "saliency"], images=images,
                    out=tmp_path / "r", batch_size=5, progress=False)
    session = Session(cfg)
    summary = run_local(cfg, "attribute", session=session)
    assert summary.computed == 2 * N_IMAGES
    bb = session.backbone(str(tiny_cnn_file))
    atts = session.attributers(bb)
    for name, att in atts.items():
        assert att._fn.experimental_get_tracing_count() == 1, name
    assert bb._compiled_logits().experimental_get_tracing_count() == 1
    # a second run in the same session (e.g. the next shard of a Ray actor): still one trace
    cfg2 = RunConfig(**{**cfg.__dict__, "out": tmp_path / "r2", "batch_size": 3})
    run_local(cfg2, "attribute", session=session)
    assert all(a._fn.experimental_get_tracing_count() == 1 for a in atts.values())
    direct = atts["gradcam"].attribute(np.zeros((1, 32, 32, 3), np.float32), [0])
    assert direct.shape == (1, 32, 32)
    assert atts["gradcam"]._fn.experimental_get_tracing_count() == 1


def test_ray_options_need_ray_executor(tiny_cnn_file, images, tmp_path):
    from tfxai.cli.options import error_text

    from tfxai.run import ConfigError

    with pytest.raises(ConfigError, match="need executor ray") as info:
        run_attribute(_cfg(tiny_cnn_file, images, tmp_path / "r", num_workers=2))
    # the library names its parameters; the CLI renders the same message with its flags
    assert str(info.value) == "address and num_workers need executor ray"
    assert error_text(info.value) == "--address and --num-workers need --executor ray"


# --------------------------------------------------------------------------------------- Ray


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install '.[ray]')")
    fault_dir = tmp_path_factory.mktemp("faults")
    old = os.environ.get("TFXAI_TEST_FAULT_DIR")
    os.environ["TFXAI_TEST_FAULT_DIR"] = str(fault_dir)  # inherited by the workers
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    try:
        yield fault_dir
    finally:
        ray.shutdown()
        if old is None:
            os.environ.pop("TFXAI_TEST_FAULT_DIR", None)
        else:
            os.environ["TFXAI_TEST_FAULT_DIR"] = old


def test_ray_equals_local(ray_cluster, tiny_cnn_file, images, local_run, tmp_path):
    out = tmp_path / "ray"
    summary = run_evaluate(_cfg(tiny_cnn_file, images, out, executor="ray", num_workers=2))
    assert not summary.interrupted and summary.errors == 0
    assert summary.rows == N_IMAGES * len(METHODS) * 3
    assert_same_results(local_run, out)
    assert not (out / ".shards").exists()
    # the shards' row and NaN counts reach the driver's summary
    scores = _rows(out / "scores.csv")
    assert sum(summary.values.values()) == summary.rows == len(scores)
    assert sum(summary.undefined.values()) == sum(r["value"] == "nan" for r in scores)
    assert {m for m, _ in summary.values} == set(METRICS)
    # re-running is a no-op: everything is found in the results folder
    again = run_evaluate(_cfg(tiny_cnn_file, images, out, executor="ray", num_workers=2))
    assert again.rows == 0 and again.computed == 0
    assert_same_results(local_run, out)


def test_ray_worker_death_reruns_its_shard(ray_cluster, tiny_cnn_file, images, local_run,
                                           tmp_path):
    armed = ray_cluster / "kill-shard-1"
    armed.write_text("exit after the first batch of shard 1")
    out = tmp_path / "ray"
    summary = run_evaluate(_cfg(tiny_cnn_file, images, out, executor="ray", num_workers=2,
                                batch_size=1))
    assert (ray_cluster / "kill-shard-1.fired").exists(), "the worker was not killed"
    assert not armed.exists()
    assert not summary.interrupted and summary.errors == 0
    assert_same_results(local_run, out)


def test_ray_cli_and_leftover_shards_of_a_killed_driver(ray_cluster, tiny_cnn_file, images,
                                                        local_run, tmp_path, monkeypatch):
    """A driver killed mid-run leaves shard folders: the next run merges them and reuses them.
    Relative paths work although the workers' working directory is not ours."""
    out = tmp_path / "ray"
    leftover = out / ".shards" / "evaluate-killed" / "shard-0003"
    partial = run_evaluate(_cfg(tiny_cnn_file, images, leftover, limit=5))
    assert partial.rows == 5 * len(METHODS) * 3
    args = ["evaluate", "--model", str(tiny_cnn_file), "--method", ",".join(METHODS),
            "--metric", ",".join(METRICS), "--images", images.name, "--annotations",
            images.name, "--out", str(out), "--batch-size", "4", "--seed", "7",
            "--param", "saliency+smoothgrad.n_samples=3", "--executor", "ray", "--num-workers", "2",
            "--no-progress"]
    monkeypatch.chdir(images.parent)
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert "merged 1 shard folder(s) left by an interrupted run" in res.output
    assert f"{(N_IMAGES - 5) * len(METHODS)} attributions computed" in res.output
    assert not (out / ".shards").exists()
    assert_same_results(local_run, out)


def test_dataset_pass_statistics_are_combined_over_shards(tiny_cnn_file, images, tmp_path,
                                                          monkeypatch):
    """A metric needing a dataset statistic gets the statistic of all shards, not of its own
    shard (the Ray actors' code, run in-process: the transport is Ray's)."""
    from tfxai.evaluation import base as ebase
    from tfxai.executors import ShardWorker, _combine_stats, partition
    from tfxai.pipeline import load_samples
    from tfxai.results import ResultsMerger

    class DatasetMax(ebase.Metric):
        """Max |attribution| of the image over the max of the whole dataset."""

        name = "test_dataset_max"
        family = "test"
        needs_dataset_pass = True

        def dataset_statistic(self, attributer, attributions):
            return float(np.abs(attributions).max())

        def combine_statistics(self, stats):
            return max(stats)

        def _evaluate(self, ctx):
            a = np.abs(np.asarray(ctx.attributions)).reshape(len(ctx), -1).max(axis=1)
            return ebase.MetricOutput(values={"": a / ctx.dataset_stat}, notes={})

    monkeypatch.setitem(ebase.METRICS, DatasetMax.name, DatasetMax)
    cfg = RunConfig(models=[str(tiny_cnn_file)], methods=["saliency"], metrics=[DatasetMax.name],
                    images=images, out=tmp_path / "local", batch_size=4, progress=False)
    run_evaluate(cfg)
    local = {r["image_id"]: float(r["value"]) for r in _rows(tmp_path / "local" / "scores.csv")}
    assert max(local.values()) == pytest.approx(1.0) and min(local.values()) < 0.999

    worker = ShardWorker(1)
    shards = partition(load_samples(cfg), 3)
    dest = tmp_path / "ray"
    folders = [str(tmp_path / f"shard{j}") for j in range(3)]
    lists: dict = {}
    for j, part in enumerate(shards):
        for key, value in worker.dataset_stats(j, part, cfg, "evaluate", folders[j],
                                               str(dest)).items():
            lists.setdefault(key, []).extend(value)
    stats = _combine_stats(cfg, lists)
    merger = ResultsMerger(dest)
    for j, part in enumerate(shards):
        res = worker.run_shard(j, part, cfg, "evaluate", folders[j], str(dest), stats)
        assert res["rows"] == len(part) and res["computed"] == 0  # reused from the first pass
        merger.merge([folders[j]])
    merged = {r["image_id"]: float(r["value"]) for r in _rows(dest / "scores.csv")}
    assert merged == pytest.approx(local, rel=1e-6)


def test_ray_usage_errors(tiny_cnn_file, images, tmp_path, monkeypatch):
    """Missing Ray, an unreachable or malformed address: clear usage errors, no hang."""
    import socket
    import sys

    from tfxai.run import ConfigError

    with socket.socket() as s:  # a free local port: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for address, message in ((f"127.0.0.1:{port}", "cannot reach a Ray cluster there"),
                             ("nohostport", "expected auto or HOST:PORT")):
        res = CliRunner().invoke(main, ["attribute", "--model", str(tiny_cnn_file), "--method",
                                        "saliency", "--images", str(images), "--out",
                                        str(tmp_path / "r"), "--executor", "ray", "--address",
                                        address, "--no-progress"])
        if "ray" not in sys.modules and "pip install" in res.output:
            pytest.skip("Ray is not installed")
        assert res.exit_code == 2, res.output
        assert message in res.output
        assert not (tmp_path / "r").exists()
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(ConfigError, match=r"pip install 'tfxai\[ray\]'"):
        run_attribute(_cfg(tiny_cnn_file, images, tmp_path / "r", executor="ray"))


def test_ray_two_models_one_at_a_time(ray_cluster, tiny_cnn_file, images, tmp_path):
    """Several models: each runs over all actors in turn (an actor holds one model)."""
    from tfxai.backend import keras

    inp = keras.Input((32, 32, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inp)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(10, activation="softmax")(x)
    keras.utils.set_random_seed(1)
    other = tmp_path / "other_cnn.keras"
    keras.Model(inp, out).save(other)
    kw = dict(models=[str(tiny_cnn_file), str(other)], methods=["gradcam"], metrics=["iou"],
              method_params={})
    run_evaluate(_cfg(tiny_cnn_file, images, tmp_path / "local", **kw))
    summary = run_evaluate(_cfg(tiny_cnn_file, images, tmp_path / "ray", executor="ray",
                                num_workers=2, **kw))
    assert summary.rows == 2 * N_IMAGES and summary.computed == 2 * N_IMAGES
    a, b = _score_table(tmp_path / "local"), _score_table(tmp_path / "ray")
    assert a.keys() == b.keys() and {k[1] for k in a} == {"tiny_cnn", "other_cnn"}
    assert all(a[k] == pytest.approx(b[k], rel=1e-5, abs=1e-6) for k in a)


def test_ray_fewer_images_than_workers(ray_cluster, tiny_cnn_file, images, tmp_path):
    """One image, two workers: one shard on a pool of one actor (the previous warm pool, which
    holds both CPUs, is released first)."""
    summary = run_attribute(_cfg(tiny_cnn_file, images, tmp_path / "r", executor="ray",
                                 num_workers=2, limit=1, metrics=[]))
    assert summary.images == 1 and summary.computed == len(METHODS)
    assert len(_rows(tmp_path / "r" / "predictions.csv")) == 1
