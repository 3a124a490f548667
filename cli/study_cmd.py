"""``tfxai study NAME``: one command per published study (a thin wrapper over :mod:`tfxai.studies`).

Exit codes as every run: 0 all well, 1 some images failed (``errors.csv``), 2 usage error, 130
interrupted (re-run the same command to resume).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import click
from tfxai.cli.options import error_text, exit_if_unfinished, split_list
from tfxai.cli.tables import WIDTH, format_table

EXIT_FAILURES, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


def _echo(msg: str) -> None:
    click.echo(msg, err=True)


def _list() -> None:
    from tfxai.studies import STUDIES

    rows = [[s.name, s.summary, ", ".join(s.default_models), ", ".join(s.quick_models)]
            for s in STUDIES.values()]
    click.echo(format_table(rows, ["study", "what it reproduces", "models", "--quick models"],
                            width=WIDTH))
    click.echo("\nRun one: tfxai study NAME [--quick] [--model ...] [--images DIR] [--out DIR]. "
               "docs/studies.md describes each protocol.")


def _verdict(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "not testable"
    return "holds" if value >= 0.5 else "does not hold"


@click.command("study")
@click.argument("name", required=False, metavar="[NAME]")
@click.option("--model", "models", default=None,
              help="Comma list of models (default: the study's: the three EfficientNet-Lite "
              "models, or small_cnn for ROAR).")
@click.option("--method", "methods", default=None,
              help="Only these of the study's methods (default: all of them), e.g. to split a "
              "long run; the rest can be added later into the same --out.")
@click.option("--images", type=click.Path(exists=True, path_type=Path), default=None,
              help="Images (default: the data the study needs that tfxai can reach: "
              "shared/data folders when present, else the bundled samples; said on the first "
              "lines).")
@click.option("--annotations", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=None, help="Folder of VOC XML files and/or mask PNGs (<stem>.png, non-zero "
              "= object). Default: next to the images.")
@click.option("--labels-from-name", default=None, metavar="PATTERN",
              help="Labels from the file names, e.g. 'sim_{synset}_' ({synset}, {index} or "
              "{label}).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder (default: results/study-NAME, or results/study-NAME-quick).")
@click.option("--quick", is_flag=True,
              help="A small setting that finishes in minutes on 2 CPU cores (fewer images and "
              "models, the same method parameters).")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Only the first N images of the study's data.")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--no-report", is_flag=True, help="Write study.csv only (no tables, plots, report).")
@click.option("--no-progress", is_flag=True, help="Hide the progress bars.")
def study(name, models, methods, images, annotations, labels_from_name, out, quick, limit,
          batch_size, seed, no_report, no_progress):  # fmt: skip
    """Run a published study's protocol and hold our numbers against the published ones.

    Writes the usual CSVs, study.csv (each published cell next to ours, and the study's findings)
    and report.html. Re-running the same command resumes. Without NAME: the list of studies.
    """
    if not name:
        _list()
        return
    from tfxai.data.dataset import DatasetError
    from tfxai.models import ModelLoadError
    from tfxai.results import ResultsWriteError
    from tfxai.run import ConfigError
    from tfxai.studies import StudyError, StudyOptions, get_study, run_study

    options = StudyOptions(
        models=split_list(models) or None, methods=split_list(methods) or None, images=images,
        annotations=annotations, labels_from_name=labels_from_name, out=out, quick=quick,
        limit=limit, batch_size=batch_size, seed=seed, progress=not no_progress,
        report=not no_report,
    )
    try:
        result = run_study(get_study(name), options, _echo)
    except (StudyError, ConfigError, DatasetError, ModelLoadError) as exc:
        _echo(f"error: {error_text(exc)}")
        sys.exit(EXIT_USAGE)
    except ResultsWriteError as exc:
        _echo(f"error: {exc}")
        sys.exit(EXIT_FAILURES)
    for note in result.notes:
        _echo(f"note: {note}")
    findings = result.rows[result.rows["table"] == "findings"]
    for row in findings.itertuples(index=False):
        who = f" [{row.model}]" if row.model and str(row.model) != "nan" else ""
        _echo(f"finding{who}: {row.row}: {_verdict(row.ours)} — {row.note}")
    cells = result.rows[result.rows["table"] != "findings"]
    filled = int(cells["ours"].notna().sum())
    _echo(f"study {result.study}: {len(cells)} published cells ({filled} with our value), "
          f"{len(findings)} findings, {result.seconds:.0f} s -> {result.out}/study.csv"
          + (f", {result.out}/report.html" if not no_report else ""))
    exit_if_unfinished(result.interrupted, result.errors, result.out, _echo)
