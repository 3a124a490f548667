"""``tfxai`` command-line entry point."""

from __future__ import annotations

import os
import re
import sys
import tempfile
import warnings
from typing import Any

import click
from tfxai.cli.options import (
    DEFAULT_METHOD,
    error_text,
    exit_if_unfinished,
    parse_params,
    parse_shard,
    run_options,
    split_list,
)
from tfxai.cli.tables import WIDTH as TABLE_WIDTH
from tfxai.cli.tables import format_table, wide_option

EXIT_OK, EXIT_FAILURES, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _echo(msg: str) -> None:
    click.echo(msg, err=True)


def _warning_to_stderr(message, category, filename, lineno, file=None, line=None) -> None:
    _echo(f"warning: {message}")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="tfxai")
def main() -> None:
    """Explain Keras image classifiers and measure whether the explanations can be trusted."""
    warnings.showwarning = _warning_to_stderr


def _table(rows: list[list[str]], header: list[str], wide: bool = False) -> str:
    """A table that fits in 100 columns (cells wrap), or one line per row with ``wide``."""
    return format_table(rows, header, width=None if wide else TABLE_WIDTH)


@main.command("models")
@wide_option
def models_cmd(wide: bool) -> None:
    """Registered backbones with input size, preprocessing and Grad-CAM layer."""
    from tfxai.models import MODELS

    rows = []
    for spec in MODELS.values():
        try:
            layer = spec.resolve_last_conv()
        except Exception:  # noqa: BLE001
            layer = "?"
        rows.append([spec.name, f"{spec.input_size[0]}x{spec.input_size[1]}",
                     spec.preprocess_mode, layer, spec.description])
    click.echo(_table(rows, ["model", "input", "preprocess", "last conv layer", "description"],
                      wide))
    click.echo("\nAlso: any saved .keras/.h5 model file (--model path/to/model.keras).")


@main.command("methods")
@wide_option
def methods_cmd(wide: bool) -> None:
    """Attribution methods with their parameters and defaults."""
    from tfxai.attribution.registry import method_info

    rows = [[r["name"], ", ".join(f"{k}={v!r}" for k, v in r["params"].items()) or "-",
             r["summary"]] for r in method_info()]
    click.echo(_table(rows, ["method", "parameters (defaults)", "summary"], wide))
    click.echo("\nAll methods also take batch_size; random ones take seed.\n"
               "Wrap any method in a noise tunnel: METHOD+smoothgrad.")


def _better(row: dict[str, Any]) -> str:
    """``higher``, or one ``variant direction`` line per variant when the variants differ."""
    directions = row.get("directions") or {}
    if len(set(directions.values())) > 1:
        return "\n".join(f"{v or '(value)'} {d}" for v, d in directions.items())
    return str(row["direction"])


@main.command("metrics")
@wide_option
def metrics_cmd(wide: bool) -> None:
    """Evaluation metrics with family, direction (per variant), comparability, needs and defaults."""
    from tfxai.evaluation.registry import metric_info

    rows = [[r["name"], r["family"], _better(r), r["comparable"],
             ",".join(r["needs"]) or "-", ",".join(r["variants"]) or "-",
             ", ".join(f"{k}={v!r}" for k, v in r["params"].items()) or "-"]
            for r in metric_info()]
    click.echo(_table(rows, ["metric", "family", "better", "comparable", "needs", "variants",
                             "parameters"], wide))
    click.echo("\nbetter: which way is better, per variant where they differ. comparable: whether "
               "values can rank\nmethods (a scale-dependent value grows with the size of the "
               "attribution; tfxai analyse\nshows it but never ranks on it).")


def _defaults(kw: dict[str, Any]) -> None:
    """The product card's short forms: without --images the bundled sample images (with their
    boxes next to them), without --method Grad-CAM; said on stderr before any work."""
    used = []
    if kw["images"] is None:
        from tfxai.data.samples import SAMPLE_NAMES, sample_images_dir

        try:
            kw["images"] = str(sample_images_dir())
        except (FileNotFoundError, OSError) as exc:
            _echo(f"error: no --images given and the bundled sample images are unavailable: {exc}")
            sys.exit(EXIT_USAGE)
        n = min(len(SAMPLE_NAMES), kw["limit"] or len(SAMPLE_NAMES))
        used.append(f"the bundled sample images ({n})")
    if not split_list(kw["methods"]):
        kw["methods"] = DEFAULT_METHOD
        used.append(f"method {DEFAULT_METHOD}")
    if used:
        _echo(f"using {' and '.join(used)}")


def _config(kw: dict[str, Any], metrics: str | None = None):
    from tfxai.attribution.registry import list_methods
    from tfxai.run import RunConfig

    params = parse_params(kw["params"])
    _defaults(kw)
    metric_names = split_list(metrics)
    method_names = split_list(kw["methods"])
    known = set(list_methods())
    method_params = {k: v for k, v in params.items()
                     if k in known or k in method_names or "+" in k}
    metric_params = {k: v for k, v in params.items() if k not in method_params}
    model_options = {}
    if kw["preprocess"]:
        model_options["preprocess"] = kw["preprocess"]
    if kw["last_conv_layer"]:
        model_options["last_conv_layer"] = kw["last_conv_layer"]
    if kw["model_output"] != "probabilities":
        model_options["output"] = kw["model_output"]
    return RunConfig(
        models=split_list(kw["models"]), methods=method_names, metrics=metric_names,
        images=kw["images"], annotations=kw["annotations"], labels=kw["labels"],
        labels_from_name=kw["labels_from_name"],
        weights=kw["weights"], out=kw["out"], target=kw["target"], resize=kw["resize"],
        limit=kw["limit"], batch_size=kw["batch_size"], seed=kw["seed"],
        method_params=method_params, metric_params=metric_params,
        shard=parse_shard(kw["shard"]), progress=not kw["no_progress"],
        model_options=model_options, executor=kw["executor"], address=kw["address"],
        num_workers=kw["num_workers"], worker_cpus=kw["cpus_per_worker"],
    )


def _run(fn, cfg) -> None:
    from tfxai.data.dataset import DatasetError
    from tfxai.models import ModelLoadError
    from tfxai.results import ResultsWriteError
    from tfxai.run import ConfigError

    try:
        summary = fn(cfg)
    except (ConfigError, DatasetError, ModelLoadError) as exc:
        _echo(f"error: {error_text(exc)}")
        sys.exit(EXIT_USAGE)
    except ResultsWriteError as exc:
        _echo(f"error: {exc}")
        sys.exit(EXIT_FAILURES)
    except RuntimeError as exc:
        from tfxai.executors import ExecutorError

        if not isinstance(exc, ExecutorError):
            raise
        _echo(f"error: {exc}\nresults so far are saved; re-run the same command to resume.")
        sys.exit(EXIT_FAILURES)
    for note in summary.notes:
        if note not in summary.warnings:  # a warning was printed when it was issued
            _echo(f"note: {note}")
    nan = sum(summary.undefined.values())
    _echo(f"{summary.images} images: {summary.computed} attributions computed, "
          f"{summary.skipped} reused/skipped, {summary.rows} score rows"
          + (f" ({nan} NaN)" if summary.rows else "")
          + f", {summary.errors} errors -> {summary.out}")
    lines = summary.undefined_lines()
    if lines:
        _echo("undefined values (NaN) in the score rows written, by metric and reason:")
        for line in lines:
            _echo(f"  {line}")
    exit_if_unfinished(summary.interrupted, summary.errors, summary.out, _echo)


@main.command("attribute")
@run_options
def attribute_cmd(**kw: Any) -> None:
    """Compute attributions for models × methods over the images (resumable)."""
    from tfxai.run import run_attribute

    _run(run_attribute, _config(kw))


@main.command("evaluate")
@click.option("--metric", "metrics", required=True, help="Comma list of metrics.")
@run_options
def evaluate_cmd(metrics: str, **kw: Any) -> None:
    """Score attributions with metrics into scores.csv (reuses stored attributions)."""
    from tfxai.run import run_evaluate

    _run(run_evaluate, _config(kw, metrics))


def _register_optional() -> None:
    """Commands living in their own modules (analyse, training, ...)."""
    import importlib

    for module, names in (
        ("tfxai.cli.analyse_cmd", ("analyse",)),
        ("tfxai.cli.train_cmds", ("finetune", "roar", "synth")),
        ("tfxai.cli.demo_cmd", ("demo",)),
        ("tfxai.cli.merge_cmd", ("merge",)),
        ("tfxai.cli.study_cmd", ("study",)),
    ):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        for name in names:
            cmd = getattr(mod, name, None)
            if cmd is not None:
                main.add_command(cmd, name)


_register_optional()


# Lines TensorFlow's C++ runtime writes to stderr while it is imported on a machine without a
# GPU (the CUDA stub of the `tensorflow` wheel, logged before absl logging is initialised; no
# environment variable silences them). They say nothing to a tfxai user.
_TF_IMPORT_NOISE = re.compile(
    r"All log messages before absl::InitializeLog|cudart_stub\.cc|Could not find cuda drivers|"
    r"failed call to cuInit|cuda_platform\.cc|cuda_diagnostics|"
    r"Unable to register cu(DNN|FFT|BLAS) factory|computation placer already registered|"
    r"TF-TRT Warning|oneDNN custom operations are on|cpu_feature_guard\.cc|"
    r"rebuild TensorFlow with the appropriate compiler flags"
)
_TF_FREE_COMMANDS = {"analyse", "merge", "synth", "--help", "-h", "--version"}


def _import_tensorflow_quietly() -> None:
    """Import TensorFlow with its C++ start-up chatter filtered out of stderr (anything else it
    writes there is passed on)."""
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()  # device start-up logs its CUDA probe here
        except ImportError:
            pass  # reported where tfxai imports it
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        text = tmp.read().decode(errors="replace")
    kept = [line for line in text.splitlines() if line.strip() and not _TF_IMPORT_NOISE.search(line)]
    if kept:
        sys.stderr.write("\n".join(kept) + "\n")


def entry() -> None:
    """The console script: :func:`main`, with a Keras that is not Keras 3 on TensorFlow reported
    as a usage error (exit 2) instead of a traceback."""
    from tfxai import BackendError

    if len(sys.argv) > 1 and sys.argv[1] not in _TF_FREE_COMMANDS:
        _import_tensorflow_quietly()
    try:
        main()
    except BackendError as exc:
        _echo(f"error: {exc}")
        sys.exit(EXIT_USAGE)

if __name__ == "__main__":
    entry()
