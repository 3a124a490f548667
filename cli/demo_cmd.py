"""``tfxai demo``: the embedded default (real pretrained backbone, bundled images and boxes)."""

from __future__ import annotations

import sys
import time

import click


@click.command("demo")
@click.option("--out", default="results/demo", show_default=True, type=click.Path(),
              help="Results folder of the demo.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--no-progress", is_flag=True, help="Hide the progress bars.")
def demo(out: str, seed: int, no_progress: bool) -> None:
    """Explain EfficientNet-Lite0 and -Lite1 (ImageNet weights, offline) on six bundled
    photographs, evaluate the explanations and write the report (two models, so that the report
    can test whether each metric ranks the methods consistently)."""
    from tfxai.demo import run_demo

    t0 = time.perf_counter()
    result = run_demo(out, progress=not no_progress, seed=seed)
    errors = sum(s.errors for s in result.summaries)
    for summary in result.summaries:
        for line in summary.undefined_lines():
            click.echo(f"  {line}", err=True)
    click.echo(f"demo finished in {time.perf_counter() - t0:.0f} s; results in {result.out}",
               err=True)
    if result.report is not None:
        click.echo(f"report: {result.report.resolve()}", err=True)
    if errors:
        click.echo(f"{errors} failures: see {result.out}/errors.csv", err=True)
        sys.exit(1)
