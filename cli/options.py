"""Shared click options and parsers of the ``tfxai`` commands."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click

#: the method of ``tfxai attribute``/``evaluate`` without ``--method``
DEFAULT_METHOD = "gradcam"


#: the library's option names (``{opt:name}`` in its messages, :mod:`tfxai.messages`) → flags
FLAGS = {
    "models": "--model", "methods": "--method", "metrics": "--metric", "images": "--images",
    "annotations": "--annotations", "labels": "--labels", "labels_from_name": "--labels-from-name",
    "weights": "--weights", "out": "--out", "target": "--target", "resize": "--resize",
    "limit": "--limit", "batch_size": "--batch-size", "seed": "--seed", "shard": "--shard",
    "method_params": "--param", "metric_params": "--param", "executor": "--executor",
    "address": "--address", "num_workers": "--num-workers", "worker_cpus": "--cpus-per-worker",
}


def error_text(exc: BaseException) -> str:
    """A library error's message with its options named by the CLI's flags."""
    from tfxai.messages import render, template_of

    return render(template_of(exc), FLAGS)


def exit_if_unfinished(interrupted: bool, errors: Any, out: Any,
                       echo: Callable[[str], None]) -> None:
    """The run's exit code when it did not finish cleanly: 130 interrupted (re-run resumes), 1
    when some images failed (``errors.csv``); return otherwise (exit 0)."""
    if interrupted:
        echo("interrupted: results so far are saved; re-run the same command to resume.")
        raise SystemExit(130)
    if errors:
        echo(f"some images failed: see {out}/errors.csv")
        raise SystemExit(1)


def split_list(value: str | None) -> list[str]:
    """``"a,b, c"`` → ``["a", "b", "c"]``."""
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def parse_value(text: str) -> Any:
    """A ``--param`` value: JSON (numbers, true/false, null, lists) or a plain string."""
    low = text.strip()
    if low in ("True", "False"):
        return low == "True"
    if low in ("None", "none", "null"):
        return None
    try:
        return json.loads(low)
    except json.JSONDecodeError:
        return text


def parse_params(items: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """``("integrated_gradients.steps=32", ...)`` → ``{"integrated_gradients": {"steps": 32}}``."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        name, eq, value = item.partition("=")
        owner, dot, key = name.partition(".")
        if not eq or not dot or not owner or not key:
            raise click.BadParameter(
                f"{item!r}: expected NAME.PARAM=VALUE, e.g. integrated_gradients.steps=32",
                param_hint="--param",
            )
        out.setdefault(owner.strip(), {})[key.strip()] = parse_value(value)
    return out


def parse_shard(value: str | None) -> tuple[int, int] | None:
    if not value:
        return None
    try:
        i, n = (int(v) for v in value.split("/"))
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected i/n, e.g. 0/4", param_hint="--shard") from None
    if n < 1 or not 0 <= i < n:
        raise click.BadParameter(f"{value!r}: need 0 <= i < n", param_hint="--shard")
    return i, n


def run_options(fn: Callable) -> Callable:
    """The options shared by ``attribute`` and ``evaluate`` (README, "Typical use")."""
    opts = [
        click.option("--model", "models", required=True,
                     help="Comma list of registered models or saved .keras/.h5 model files."),
        click.option("--method", "methods", default=None,
                     help="Comma list of methods; wrap with a noise tunnel as METHOD+smoothgrad. "
                     f"Default: {DEFAULT_METHOD}."),
        click.option("--images", default=None, type=click.Path(),
                     help="Folder of images (recursive; ImageNet-style folders give labels), "
                     "a list file, or one image. Default: the six bundled sample images, "
                     "with their boxes."),
        click.option("--annotations", type=click.Path(), default=None,
                     help="Folder of Pascal-VOC XML files and/or segmentation mask PNGs "
                     "(<stem>.xml, <stem>.png; non-zero = object). Default: the XML file and "
                     "<stem>_mask.png next to each image, where there are."),
        click.option("--labels", type=click.Path(), default=None,
                     help="CSV with columns image,label (class index or synset)."),
        click.option("--labels-from-name", default=None, metavar="PATTERN",
                     help="Labels from the file names, e.g. 'sim_{synset}_' (placeholders "
                     "{synset}, {index} or {label}; matched at the start of the stem). A CSV "
                     "from --labels takes precedence."),
        click.option("--weights", default="imagenet", show_default=True,
                     help="imagenet | none (random, for tests) | path to a weights file."),
        click.option("--out", default="results", show_default=True, type=click.Path(),
                     help="Results folder."),
        click.option("--target", type=click.Choice(["predicted", "label"]), default="predicted",
                     show_default=True, help="Explain the predicted class or the true label."),
        click.option("--resize", type=click.Choice(["squash", "crop"]), default="squash",
                     show_default=True),
        click.option("--limit", type=click.IntRange(min=1), default=None,
                     help="Use only the first N images."),
        click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option("--param", "params", multiple=True,
                     help="NAME.PARAM=VALUE for a method or metric, repeatable."),
        click.option("--shard", default=None,
                     help="Run only shard i/n of the images (deterministic by image id); "
                     "combine the shard folders with `tfxai merge`."),
        click.option("--executor", type=click.Choice(["local", "ray"]), default="local",
                     show_default=True,
                     help="local: this process; ray: shards on Ray actors (pip install "
                     "'tfxai[ray]'), merged into --out."),
        click.option("--address", default=None,
                     help="Ray cluster to join: auto or HOST:PORT (default: start a local "
                     "cluster). Needs --executor ray."),
        click.option("--num-workers", type=click.IntRange(min=1), default=None,
                     help="Ray actors (default: one per CPU); also the size of a local "
                     "cluster. Needs --executor ray."),
        click.option("--cpus-per-worker", type=click.IntRange(min=1), default=1,
                     show_default=True, help="CPUs (TensorFlow threads) per Ray actor."),
        click.option("--preprocess", default=None,
                     help="Custom models: preprocessing of a registered model (e.g. vgg16)."),
        click.option("--last-conv-layer", default=None,
                     help="Override the Grad-CAM layer of the model."),
        click.option("--output", "model_output", type=click.Choice(["probabilities", "logits"]),
                     default="probabilities", show_default=True,
                     help="Custom models: what the last layer outputs."),
        click.option("--no-progress", is_flag=True, help="Hide the progress bar."),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn
