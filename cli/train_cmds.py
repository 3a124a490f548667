"""``tfxai finetune``, ``tfxai roar`` and ``tfxai synth``: thin wrappers over :mod:`tfxai.training`
and :mod:`tfxai.data.synthetic`.

Usage errors (a missing data folder, a fraction outside (0, 1], an unknown model) exit with code 2.
"""

from __future__ import annotations

from pathlib import Path

import click
from tfxai.cli.options import error_text

DATA_DIR = click.Path(exists=True, file_okay=False, path_type=Path)
OUT_DIR = click.Path(file_okay=False, path_type=Path)


def _split(text: str) -> list[str]:
    return [item.strip() for item in str(text).split(",") if item.strip()]


def _fractions(low_open: bool = True):
    """A click callback parsing ``0.1,0.3`` into floats, each in (0, 1]."""

    def parse(ctx: click.Context, param: click.Parameter, value: str) -> list[float]:
        items = _split(value)
        if not items:
            raise click.BadParameter("give at least one fraction, e.g. 0.2,0.4", ctx, param)
        out = []
        for item in items:
            try:
                f = float(item)
            except ValueError:
                raise click.BadParameter(f"{item!r} is not a number", ctx, param) from None
            if not (0.0 < f <= 1.0 if low_open else 0.0 <= f <= 1.0):
                raise click.BadParameter(f"fraction {item} is outside (0, 1]", ctx, param)
            out.append(f)
        return out

    return parse


def _methods(ctx: click.Context, param: click.Parameter, value: str) -> list[str]:
    from tfxai.attribution.registry import list_methods

    items = _split(value)
    if not items:
        raise click.BadParameter("give at least one method", ctx, param)
    known = set(list_methods()) | {"random"}
    unknown = [m for m in items if m not in known and "+" not in m]
    if unknown:
        raise click.BadParameter(
            f"unknown method(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}", ctx, param
        )
    return items


def _input_size(ctx: click.Context, param: click.Parameter, value: int | None) -> tuple[int, int] | None:
    return None if value is None else (int(value), int(value))


def _usage(exc: Exception) -> click.UsageError:
    return click.UsageError(error_text(exc))


_TRAIN_OPTIONS = [
    click.option("--epochs", type=click.IntRange(min=1), default=15, show_default=True),
    click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-3, show_default=True,
                 help="SGD learning rate for the first --lr-drop-epoch epochs."),
    click.option("--lr-after", type=click.FloatRange(min=0, min_open=True), default=1e-4,
                 show_default=True, help="Learning rate after --lr-drop-epoch epochs."),
    click.option("--lr-drop-epoch", type=click.IntRange(min=0), default=7, show_default=True),
    click.option("--momentum", type=click.FloatRange(0, 1, max_open=True), default=0.9,
                 show_default=True),
    click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True),
    click.option("--optimizer", type=click.Choice(["sgd", "adam"]), default="sgd", show_default=True,
                 help="sgd (with --momentum, Erdem's protocol) or adam (faster for small_cnn from "
                      "scratch)."),
    click.option("--weights", default=None,
                 help="imagenet|none|FILE for a registered backbone (default imagenet); "
                      "small_cnn always trains from scratch."),
    click.option("--seed", type=int, default=0, show_default=True),
    click.option("--input-size", type=click.IntRange(min=8), default=None, callback=_input_size,
                 help="Square input side in pixels (default: the backbone's, or the images' for "
                      "small_cnn)."),
]


def _train_options(fn):
    for option in reversed(_TRAIN_OPTIONS):
        fn = option(fn)
    return fn


@click.command("finetune")
@click.option("--model", "model", default="small_cnn", show_default=True,
              help="small_cnn, a registered backbone (resnet50, ...) or a saved Keras model FILE.")
@click.option("--data", "data", type=DATA_DIR, required=True,
              help="ImageNet-style folder per class (or with train/ and test/ sub-folders).")
@click.option("--fractions", default="0.2,0.4,0.6,0.8,1.0", show_default=True, callback=_fractions(),
              help="Training-data fractions, one model each.")
@click.option("--out", "out", type=OUT_DIR, default=Path("models"), show_default=True)
@click.option("--freeze-backbone", is_flag=True, help="Train only the new dense head.")
@_train_options
def finetune(model, data, fractions, out, freeze_backbone, epochs, lr, lr_after, lr_drop_epoch,
             momentum, batch_size, optimizer, weights, seed, input_size):  # fmt: skip
    """Fine-tune one model per training fraction; writes OUT/<model>_f<fraction>.keras and OUT/models.csv."""
    from tfxai.training import finetune as run

    try:
        table = run(
            model, data, fractions=fractions, out_dir=out, epochs=epochs, lr=lr, lr_after=lr_after,
            lr_drop_epoch=lr_drop_epoch, momentum=momentum, batch_size=batch_size, weights=weights,
            seed=seed, input_size=input_size, freeze_backbone=freeze_backbone, optimizer=optimizer,
        )
    except ValueError as exc:
        raise _usage(exc) from exc
    for row in table.itertuples():
        click.echo(f"{row.file}: fraction {row.fraction:g}, n_train {row.n_train}, "
                   f"accuracy {row.accuracy:.3f}, macro-F1 {row.macro_f1:.3f}", err=True)
    click.echo(f"wrote {len(table)} models and {out / 'models.csv'}", err=True)


@click.command("roar")
@click.option("--model", "model", default="small_cnn", show_default=True,
              help="small_cnn, a registered backbone or a saved Keras model FILE (retrained from its "
                   "last conv layer with a new head).")
@click.option("--method", "methods", default="saliency,integrated_gradients", show_default=True,
              callback=_methods, help="Attribution methods, comma-separated; 'random' is always added.")
@click.option("--data", "data", type=DATA_DIR, required=True,
              help="ImageNet-style folder per class (or with train/ and test/ sub-folders).")
@click.option("--fractions", default="0.1,0.3,0.5,0.7,0.9", show_default=True, callback=_fractions(),
              help="Shares of pixels removed.")
@click.option("--seeds", type=click.IntRange(min=1), default=5, show_default=True,
              help="Retrainings per (method, fraction).")
@click.option("--out", "out", type=OUT_DIR, default=Path("results"), show_default=True)
@click.option("--target", type=click.Choice(["predicted", "label"]), default="predicted",
              show_default=True, help="Class explained when ranking pixels.")
@click.option("--no-zero", is_flag=True, help="Skip the unmodified (fraction 0) trainings.")
@_train_options
def roar(model, methods, data, fractions, seeds, out, target, no_zero, epochs, lr, lr_after,
         lr_drop_epoch, momentum, batch_size, optimizer, weights, seed, input_size):  # fmt: skip
    """RemOve And Retrain (Hooker 2019): writes OUT/roar.csv (method, fraction, seed, accuracy)."""
    from tfxai.training import roar as run

    try:
        table = run(
            model, data, methods=methods, fractions=fractions, seeds=seeds, epochs=epochs,
            out_dir=out, lr=lr, lr_after=lr_after, lr_drop_epoch=lr_drop_epoch, momentum=momentum,
            batch_size=batch_size, weights=weights, seed=seed, input_size=input_size, target=target,
            include_zero=not no_zero, optimizer=optimizer,
        )
    except ValueError as exc:
        raise _usage(exc) from exc
    means = table.groupby(["method", "fraction"])["accuracy"].mean().unstack("fraction")
    click.echo(means.round(3).to_string(), err=True)
    click.echo(f"wrote {out / 'roar.csv'}", err=True)


@click.command("synth")
@click.option("--out", "out", type=OUT_DIR, required=True)
@click.option("--n-per-class", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--classes", default="circle,square,triangle", show_default=True,
              help="Shapes, comma-separated (circle, square, triangle, cross, ring).")
@click.option("--size", type=click.IntRange(min=16), default=64, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--no-split", is_flag=True, help="One level of class folders instead of train/ and test/.")
def synth(out, n_per_class, classes, size, seed, no_split):
    """Write a synthetic shapes-on-textures dataset with VOC boxes and labels.csv to OUT."""
    from tfxai.data.synthetic import make_synthetic_dataset

    try:
        ds = make_synthetic_dataset(out, n_per_class=n_per_class, classes=_split(classes), size=size,
                                    seed=seed, split=not no_split)
    except ValueError as exc:
        raise _usage(exc) from exc
    click.echo(f"wrote {ds.n_train} train and {ds.n_test} test images of {', '.join(ds.classes)} "
               f"to {out}", err=True)


COMMANDS = [finetune, roar, synth]
