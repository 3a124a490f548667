"""``tfxai analyse``: summaries, the reliability test, plots and report.html from results folders."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import click
from tfxai.cli.options import split_list

from tfxai.analysis import AnalysisOptions, ResultsError
from tfxai.analysis import analyse as run_analysis
from tfxai.analysis.modelinfo import parse_assignments
from tfxai.analysis.pipeline import DEFAULT_GALLERY
from tfxai.analysis.reliability import INSUFFICIENT, verdicts
from tfxai.analysis.summary import Bootstrap, parse_by


def _fmt(value: float) -> str:
    """A number for a message (NaN shown as n/a)."""
    return (
        "n/a"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else f"{value:.3f}"
    )


def _share_option(flag: str, default: float, help_text: str) -> Callable[[Callable], Callable]:
    """A ``--flag`` taking a number in [0, 1] (a probability or a share), default shown."""
    return click.option(
        flag, type=click.FloatRange(0.0, 1.0), default=default, show_default=True, help=help_text
    )


@click.command("analyse")
@click.argument(
    "results_dirs", metavar="[RESULTS_DIR ...]", nargs=-1, type=click.Path(path_type=Path)
)
@click.option(
    "--by",
    default="model,method",
    show_default=True,
    help="Grouping of summary.csv besides metric and variant: any of model, method, band, "
    "architecture, weights, run.",
)
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Output folder. Default: the results folder when one is given, else ./analysis.",
)
@_share_option(
    "--high-confidence", 0.9, "Confidence band threshold: high when top-1 probability > this."
)
@click.option(
    "--accuracy",
    default=None,
    metavar="MODEL=ACC,...",
    help="Model accuracies for the reliability test (override models.csv and predictions.csv).",
)
@click.option(
    "--architecture",
    default=None,
    metavar="MODEL=ARCH,...",
    help="Architecture of each model for the within/across-architecture reliability test.",
)
@_share_option(
    "--min-pair-share", 1.0, "Reliability: minimum share of method pairs with a preserved order."
)
@_share_option("--min-w", 0.9, "Reliability: minimum Kendall's W.")
@click.option(
    "--gallery",
    type=click.IntRange(min=0),
    default=None,
    help="Draw a gallery of the first N images (needs an attribution store). Default: "
    f"{DEFAULT_GALLERY} when the image folder is known (--images or runs.jsonl), else none.",
)
@click.option("--no-gallery", is_flag=True, default=False, help="Draw no gallery.")
@click.option("--gallery-images", default=None, metavar="ID,...", help="Image ids for the gallery.")
@click.option(
    "--images",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Folder with the images, to draw the gallery's maps over them (default: the folder "
    "recorded in runs.jsonl).",
)
@click.option(
    "--bootstrap",
    "resamples",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Bootstrap resamples (over images) of the confidence intervals.",
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed of the bootstrap resampling."
)
@click.option("--plots/--no-plots", default=True, show_default=True, help="Draw plots/*.png.")
@click.option("--report/--no-report", default=True, show_default=True, help="Write report.html.")
def analyse(results_dirs, by, out, high_confidence, accuracy, architecture, min_pair_share, min_w,
            gallery, no_gallery, gallery_images, images, resamples, seed, plots,
            report):  # fmt: skip
    """Summarise RESULTS_DIR(s) (default: results) into summary.csv, plots/*.png and report.html."""
    dirs = list(results_dirs) or [Path("results")]
    if no_gallery and (gallery or gallery_images):
        raise click.UsageError("--no-gallery contradicts --gallery/--gallery-images")
    try:
        options = AnalysisOptions(
            by=parse_by(by),
            high_confidence=high_confidence,
            accuracy=parse_assignments(accuracy, "--accuracy", as_float=True),
            architecture=parse_assignments(architecture, "--architecture"),
            min_pair_share=min_pair_share,
            min_w=min_w,
            gallery=0 if no_gallery else gallery,
            gallery_images=split_list(gallery_images),
            images=images,
            plots=plots,
            report=report,
            bootstrap=Bootstrap(resamples=resamples, seed=seed),
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    out = out if out is not None else (dirs[0] if len(dirs) == 1 else Path("analysis"))
    try:
        result = run_analysis(dirs, out, options)
    except ResultsError as exc:
        raise click.BadParameter(str(exc), param_hint="RESULTS_DIR") from exc
    except OSError as exc:
        raise click.ClickException(f"cannot write to {out}: {exc.strerror or exc}") from exc
    for note in result.notes:
        click.echo(f"note: {note}", err=True)
    rows = verdicts(result.tables["reliability"])
    tested = rows[rows["verdict"] != INSUFFICIENT]
    untested = rows[rows["verdict"] == INSUFFICIENT]
    for reason in dict.fromkeys(untested["reason"]):
        names = untested.loc[untested["reason"] == reason, ["metric", "variant"]]
        listed = ", ".join(f"{m}[{v}]" if v else m for m, v in names.itertuples(index=False))
        click.echo(f"reliability: not tested ({listed}): {reason}", err=True)
    for row in tested.itertuples(index=False):
        name = f"{row.metric}[{row.variant}]" if row.variant else row.metric
        click.echo(
            f"reliability: {name}: {row.verdict} (pair share {_fmt(row.pair_share)}, "
            f"Kendall's W {_fmt(row.kendalls_w)}, {row.n_models} models, {row.n_methods} methods)",
            err=True,
        )
    click.echo(f"wrote {len(result.files)} files to {out}", err=True)
