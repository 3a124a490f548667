"""``tfxai merge``: combine results folders (e.g. of ``--shard i/n`` runs) without duplicates."""

from __future__ import annotations

import sys

import click


@click.command("merge")
@click.argument("sources", nargs=-1, required=True, type=click.Path())
@click.option("--out", "dest", required=True, type=click.Path(),
              help="Destination results folder (created if needed; may already hold results).")
def merge(sources: tuple[str, ...], dest: str) -> None:
    """Merge results folders SOURCES... into --out.

    Rows already in the destination (or earlier in the sources) are skipped by key; attribution
    files are copied atomically. Merging is idempotent: an interrupted merge is finished by
    running it again.
    """
    from tfxai.results import ResultsWriteError, merge_results

    try:
        res = merge_results(sources, dest)
    except ValueError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except ResultsWriteError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    rows = ", ".join(f"{n} {name}" for name, n in res.rows.items())
    click.echo(f"merged {len(sources)} folder(s) into {dest}: {rows} rows, "
               f"{res.attributions} attributions; {res.duplicates} duplicate rows skipped",
               err=True)
