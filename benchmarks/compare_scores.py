"""Compare two ``scores.csv`` files value by value: do the numbers move between two runs?

Used for the Keras 3 migration: the same ``tfxai evaluate`` command run on the old stack
(Python 3.11, TF 2.14, Keras 2) and on the new one (TF >= 2.18, Keras 3) must give the same
values to float32 tolerance.

    python benchmarks/compare_scores.py OLD/scores.csv NEW/scores.csv [--rtol 1e-4]

Rows are matched on image_id, model, method, metric and variant. A pair agrees when both values
are NaN, or when ``|new − old| <= rtol · max(|old|, |new|) + atol``; ``atol`` (default 1e-6)
only keeps values that are zero up to float32 round-off (e.g. a max-sensitivity of 0) from
failing on a relative test. Prints one line per method × metric (rows, worst relative difference,
disagreements), the prediction comparison when both folders hold ``predictions.csv``, and exits 1
when anything disagrees or a row is missing on either side.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

KEYS = ["image_id", "model", "method", "metric", "variant"]


def load(path: Path) -> pd.DataFrame:
    df = pd.read_csv(path, keep_default_na=False, na_values=[""])
    df["variant"] = df["variant"].fillna("").astype(str)
    return df


def compare(old: pd.DataFrame, new: pd.DataFrame, rtol: float, atol: float) -> tuple[pd.DataFrame, int]:
    """Per method × metric summary and the number of missing rows."""
    both = old.merge(new, on=KEYS, how="outer", suffixes=("_old", "_new"), indicator=True)
    missing = int((both["_merge"] != "both").sum())
    both = both[both["_merge"] == "both"].copy()
    a = both["value_old"].to_numpy(float)
    b = both["value_new"].to_numpy(float)
    nan_a, nan_b = np.isnan(a), np.isnan(b)
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.maximum(np.abs(a), np.abs(b))
        rel = np.where(scale > 0, np.abs(a - b) / scale, 0.0)
        ok = (nan_a & nan_b) | (~nan_a & ~nan_b & (np.abs(a - b) <= rtol * scale + atol))
    both["rel"] = np.where(nan_a | nan_b, np.nan, rel)
    both["ok"] = ok
    summary = both.groupby(["method", "metric"], sort=True).agg(
        rows=("ok", "size"), worst_rel=("rel", "max"), disagree=("ok", lambda s: int((~s).sum())),
        nan=("value_old", lambda s: int(s.isna().sum())),
    )
    return summary.reset_index(), missing


TEXT_COLUMNS = ["method_params", "metric_params", "note"]


def compare_text(old: pd.DataFrame, new: pd.DataFrame) -> str:
    """The recorded parameters and notes of matched rows, as text. The parameters of both files
    are first put in today's names (:mod:`tfxai.vocabulary`: ``n_perturbations`` → ``n_samples``
    ...), as every reader of a results folder does; the line says how many were renamed."""
    from tfxai.vocabulary import migrate_params_json

    cols = [c for c in TEXT_COLUMNS if c in old.columns and c in new.columns]
    both = old.merge(new, on=KEYS, how="inner", suffixes=("_old", "_new"))
    renamed, differ = 0, {}
    for col in cols:
        a = both[f"{col}_old"].fillna("").astype(str)
        b = both[f"{col}_new"].fillna("").astype(str)
        if col != "note":
            owner = both["method"] if col == "method_params" else both["metric"]
            for side in (a, b):
                migrated = [migrate_params_json(o, t) for o, t in zip(owner, side, strict=True)]
                renamed += sum(m != t for m, t in zip(migrated, side, strict=True))
                side[:] = migrated
        differ[col] = int((a != b).sum())
    shown = ", ".join(f"{c} {n}" for c, n in differ.items())
    return (f"text columns differing on matched rows: {shown} "
            f"({renamed} old parameter strings put in today's names first)")


def compare_predictions(old_dir: Path, new_dir: Path) -> str | None:
    po, pn = old_dir / "predictions.csv", new_dir / "predictions.csv"
    if not (po.exists() and pn.exists()):
        return None
    a, b = pd.read_csv(po), pd.read_csv(pn)
    m = a.merge(b, on=["image_id", "model"], suffixes=("_old", "_new"))
    same = int((m["predicted_old"] == m["predicted_new"]).sum())
    conf = np.abs(m["confidence_old"] - m["confidence_new"]).max()
    acc_old = a["correct"].astype(str).str.lower().isin(["true", "1"]).sum()
    acc_new = b["correct"].astype(str).str.lower().isin(["true", "1"]).sum()
    return (f"predictions: {same}/{len(m)} identical top-1; correct {acc_old}/{len(a)} (old) vs "
            f"{acc_new}/{len(b)} (new); max |Δconfidence| {conf:.2e}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old", type=Path)
    ap.add_argument("new", type=Path)
    ap.add_argument("--rtol", type=float, default=1e-4)
    ap.add_argument("--atol", type=float, default=1e-6)
    args = ap.parse_args(argv)
    summary, missing = compare(load(args.old), load(args.new), args.rtol, args.atol)
    with pd.option_context("display.width", 120, "display.float_format", "{:.2e}".format):
        print(summary.to_string(index=False))
    total, bad = int(summary["rows"].sum()), int(summary["disagree"].sum())
    print(f"\n{total} rows matched, {bad} disagree at rtol={args.rtol:g} (atol={args.atol:g}), "
          f"{missing} present on one side only; worst relative difference "
          f"{np.nanmax(summary['worst_rel'].to_numpy(float)):.2e}")
    text = compare_text(load(args.old), load(args.new))
    print(text)
    pred = compare_predictions(args.old.parent, args.new.parent)
    if pred:
        print(pred)
    return 0 if bad == 0 and missing == 0 and _no_text_difference(text) else 1


def _no_text_difference(line: str) -> bool:
    counts = line.split(": ", 1)[1].split(" (")[0]
    return all(part.rsplit(" ", 1)[1] == "0" for part in counts.split(", "))


if __name__ == "__main__":
    sys.exit(main())
