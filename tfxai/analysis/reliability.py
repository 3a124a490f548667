"""The reliability test of an evaluation measure (Erdem 2021; REFERENCE.md, study 3).

A measure is reliable when, within one dataset and architecture, the order of attribution methods by the
measure stays the same across models of different accuracy. For each metric (and variant):

1. Each model ranks the methods by their mean score (mean over images, NaN skipped); rank 1 is the best
   method, using the metric's direction; equal means share the average rank.
2. **Pair share**: over all pairs of methods, the share whose order (a better, b better, or tied) is the
   same in every model. 1.0 means the order never changes.
3. **Kendall's W** (coefficient of concordance) over the models' rankings, with the tie correction
   (Kendall & Babington Smith 1939; Siegel & Castellan 1988)::

       W = 12·S / (m²·(n³ − n) − m·Σ_j T_j),   S = Σ_i (R_i − m(n+1)/2)²,   T_j = Σ_groups (t³ − t)

   with m models (raters), n methods (items), R_i the rank sum of method i and t the size of each group of
   tied ranks within model j. W = 1 when all models rank identically; W ≈ 0 when there is no agreement.
4. Both numbers are computed **within each architecture** (its models only) and **across architectures**
   (all models pooled), when there is more than one architecture.

Neither number depends on the direction: reversing every ranking changes neither the agreement of pairs
nor W. The direction only decides which method is listed as best.

Verdict per metric, with thresholds ``min_pair_share`` (default 1.0) and ``min_w`` (default 0.9). A set of
models is *consistent* when ``pair_share >= min_pair_share`` and ``W >= min_w``.

- ``reliable``: consistent within every architecture that has at least two models, and consistent across
  architectures (automatically so when there is only one architecture);
- ``order-preserving``: consistent within every architecture but not across architectures (Erdem's finding
  for sensitivity);
- ``unreliable``: not consistent within at least one architecture (Erdem's finding for infidelity);
- ``insufficient data``: fewer than two methods with a defined mean in every model, or no architecture with
  at least two models. The ``reason`` column then says exactly what is missing
  (:func:`insufficient_reason`), e.g. "needs at least two models of one architecture; these results have
  one (efficientnet_lite0)".

``best_method`` is the method with the best average rank; equal average ranks read ``tie: a, b``. It is
left empty for a metric whose values do not compare across methods (:func:`tfxai.metadata.comparability`):
the test of agreement still runs, but naming a winner would rank methods by attribution scale.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from .directions import metric_direction
from .summary import group_comparability

RELIABLE = "reliable"
ORDER_PRESERVING = "order-preserving"
UNRELIABLE = "unreliable"
INSUFFICIENT = "insufficient data"
DEFAULT_MIN_PAIR_SHARE = 1.0
DEFAULT_MIN_W = 0.9


def rank_methods(values: np.ndarray, higher_is_better: bool = True) -> np.ndarray:
    """Rank each row of ``values`` (models × methods); rank 1 = best; ties get the average rank."""
    values = np.asarray(values, dtype=float)
    keyed = -values if higher_is_better else values
    return np.vstack([rankdata(row, method="average") for row in keyed]) if len(keyed) else keyed


def kendalls_w(ranks: np.ndarray) -> float:
    """Kendall's W with tie correction for ``ranks`` of shape (m raters, n items).

    Each row must hold the ranks 1..n given by one rater (average ranks for ties). Returns NaN when W is
    undefined (fewer than 2 raters or items, or every rater ties all items).
    """
    ranks = np.asarray(ranks, dtype=float)
    if ranks.ndim != 2:
        raise ValueError(f"ranks must be 2-D (raters × items), got shape {ranks.shape}")
    m, n = ranks.shape
    if m < 2 or n < 2:
        return float("nan")
    rank_sums = ranks.sum(axis=0)
    s = float(((rank_sums - m * (n + 1) / 2.0) ** 2).sum())
    ties = 0.0
    for row in ranks:
        _, counts = np.unique(row, return_counts=True)
        ties += float((counts**3 - counts).sum())
    denominator = m**2 * (n**3 - n) - m * ties
    if denominator <= 0:
        return float("nan")
    return 12.0 * s / denominator


def pair_order_share(values: np.ndarray) -> float:
    """Share of method pairs whose order is the same in every row of ``values`` (models × methods).

    The order of a pair is the sign of the difference of their values: a tie in one model and a strict
    order in another counts as a change. NaN when there are fewer than two methods or no model.
    """
    values = np.asarray(values, dtype=float)
    if values.ndim != 2 or values.shape[0] == 0 or values.shape[1] < 2:
        return float("nan")
    pairs = list(itertools.combinations(range(values.shape[1]), 2))
    kept = sum(len(set(np.sign(values[:, a] - values[:, b]).tolist())) == 1 for a, b in pairs)
    return kept / len(pairs)


def method_means(scores: pd.DataFrame, metric: str, variant: str = "") -> pd.DataFrame:
    """Models × methods table of the mean ``value`` of ``metric``/``variant`` (NaN skipped)."""
    rows = scores[(scores["metric"] == metric) & (scores["variant"] == variant)]
    if rows.empty:
        return pd.DataFrame()
    table = rows.pivot_table(
        index="model_id", columns="method", values="value", aggfunc="mean", dropna=False
    )
    return table.sort_index(axis=0).sort_index(axis=1)


@dataclass
class Agreement:
    """Pair share and Kendall's W of one set of models."""

    pair_share: float
    kendalls_w: float
    n_models: int
    n_methods: int

    def consistent(self, min_pair_share: float, min_w: float) -> bool:
        """True when both numbers reach their thresholds."""
        return bool(self.pair_share >= min_pair_share and self.kendalls_w >= min_w)


def agreement(values: pd.DataFrame, higher_is_better: bool = True) -> Agreement:
    """:class:`Agreement` of a models × methods table (rows with any NaN method are already removed)."""
    array = values.to_numpy(dtype=float)
    if array.shape[0] < 2 or array.shape[1] < 2:
        return Agreement(
            float("nan"), float("nan"), array.shape[0], array.shape[1] if array.ndim == 2 else 0
        )
    ranks = rank_methods(array, higher_is_better)
    return Agreement(pair_order_share(array), kendalls_w(ranks), array.shape[0], array.shape[1])


def verdict(
    within: Mapping[str, Agreement], across: Agreement | None, min_pair_share: float, min_w: float
) -> str:
    """The verdict from per-architecture agreements and the cross-architecture one (module docstring)."""
    usable = {a: g for a, g in within.items() if g.n_models >= 2 and g.n_methods >= 2}
    if not usable:
        return INSUFFICIENT
    if not all(g.consistent(min_pair_share, min_w) for g in usable.values()):
        return UNRELIABLE
    if across is None or across.n_models < 2 or len(within) < 2:
        return RELIABLE
    return RELIABLE if across.consistent(min_pair_share, min_w) else ORDER_PRESERVING


def reliability_test(
    scores: pd.DataFrame,
    models: pd.DataFrame,
    min_pair_share: float = DEFAULT_MIN_PAIR_SHARE,
    min_w: float = DEFAULT_MIN_W,
) -> pd.DataFrame:
    """Run the reliability test for every (metric, variant) of ``scores``.

    Args:
        scores: scores with ``model_id``, ``method``, ``metric``, ``variant`` and ``value`` columns.
        models: :func:`tfxai.analysis.modelinfo.model_table` output (``model_id``, ``architecture``,
            ``accuracy``).
        min_pair_share, min_w: the consistency thresholds of the verdict.

    Returns:
        One row per (metric, variant, scope) where scope is ``within:<architecture>`` or ``across``, plus a
        row with scope ``verdict`` carrying the verdict; columns metric, variant, scope, n_models,
        n_methods, pair_share, kendalls_w, direction, best_method, methods_dropped, verdict.
    """
    arch = dict(zip(models["model_id"], models["architecture"], strict=True))
    accuracy = dict(zip(models["model_id"], models["accuracy"], strict=True))
    rows = []
    keys = scores[["metric", "variant"]].drop_duplicates().sort_values(["metric", "variant"])
    for metric, variant in keys.itertuples(index=False):
        rows.extend(_test_one(scores, metric, variant, arch, accuracy, min_pair_share, min_w))
    columns = [
        "metric", "variant", "scope", "n_models", "n_methods", "pair_share", "kendalls_w",
        "direction", "best_method", "methods_dropped", "verdict", "reason",
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


def _count(n: int, one: str, many: str) -> str:
    """``one (a)`` / ``two (a, b)``-style counts for messages."""
    words = {0: "none", 1: "one", 2: "two", 3: "three", 4: "four", 5: "five"}
    return words.get(n, str(n)) + f" {one if n == 1 else many}"


def insufficient_reason(
    means: pd.DataFrame, complete: pd.DataFrame, arch: Mapping[str, str]
) -> str:
    """What the reliability test of one metric lacks, in one sentence ("" when nothing is missing).

    ``means`` is the models × methods table of means, ``complete`` the same without the methods that are
    undefined in some model, ``arch`` the architecture of each model.
    """
    models = [str(m) for m in means.index]
    groups: dict[str, list[str]] = {}
    for m in models:
        groups.setdefault(arch.get(m, "all"), []).append(m)
    if not any(len(g) >= 2 for g in groups.values()):
        if len(models) <= 1:
            found = _count(len(models), "model", "models") + (f" ({models[0]})" if models else "")
            return f"needs at least two models of one architecture; these results have {found}"
        listed = "; ".join(f"{a}: {', '.join(g)}" for a, g in sorted(groups.items()))
        return ("needs at least two models of one architecture; these results have one model per "
                f"architecture ({listed}); give --architecture if some share one")
    kept = [str(c) for c in complete.columns]
    if len(kept) < 2:
        methods = ", ".join(kept)
        return ("needs at least two methods with a value in every model; found "
                + _count(len(kept), "method", "methods") + (f" ({methods})" if kept else ""))
    return ""


#: What each verdict means, in one line for the report.
VERDICT_MEANING = {
    RELIABLE: "the methods came out in the same order in every model (of each architecture and "
              "across them), so a ranking by this measure does not depend on which model was measured",
    ORDER_PRESERVING: "the order of the methods is stable within each architecture but changes across "
                      "architectures: compare methods by this measure only within one architecture",
    UNRELIABLE: "the order of the methods changed between models of one architecture, so a ranking by "
                "this measure says as much about the model as about the methods",
    INSUFFICIENT: "the test could not run; the reason column says what is missing",
}


def _complete(values: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Drop methods with a NaN mean in any model; return the table and the dropped methods."""
    if values.empty:
        return values, []
    dropped = [str(c) for c in values.columns if values[c].isna().any()]
    return values.drop(columns=dropped), dropped


def _best(values: pd.DataFrame, higher_is_better: bool, comparable: bool = True) -> str:
    """The method with the best average rank over the models of ``values``; ``tie: a, b`` when several
    share it; "" when undefined or when the metric does not compare across methods."""
    if not comparable or values.empty or values.shape[1] == 0:
        return ""
    ranks = rank_methods(values.to_numpy(dtype=float), higher_is_better).mean(axis=0)
    best = np.flatnonzero(np.isclose(ranks, ranks.min(), rtol=0.0, atol=1e-12))
    if len(best) > 1:
        return "tie: " + ", ".join(sorted(str(values.columns[i]) for i in best))
    return str(values.columns[int(best[0])])


def _test_one(
    scores: pd.DataFrame,
    metric: str,
    variant: str,
    arch: Mapping[str, str],
    accuracy: Mapping[str, float],
    min_pair_share: float,
    min_w: float,
) -> list[dict[str, object]]:
    """Rows of :func:`reliability_test` for one (metric, variant)."""
    direction = metric_direction(metric, variant, scores)
    rows_of = scores[(scores["metric"] == metric) & (scores["variant"] == variant)]
    comparable = group_comparability(rows_of, metric, variant)[0]
    means = method_means(scores, metric, variant)
    ordered = sorted(
        means.index, key=lambda m: (np.nan_to_num(accuracy.get(m, np.nan), nan=-1.0), m)
    )
    means = means.loc[ordered] if len(means) else means
    complete, dropped = _complete(means)
    base = {
        "metric": metric,
        "variant": variant,
        "direction": direction.direction + (" (assumed)" if direction.assumed else ""),
        "methods_dropped": ",".join(dropped),
    }
    rows = []
    within: dict[str, Agreement] = {}
    for name in sorted({arch.get(m, "all") for m in complete.index}):
        members = [m for m in complete.index if arch.get(m, "all") == name]
        part = complete.loc[members]
        within[name] = agreement(part, direction.higher_is_better)
        best = _best(part, direction.higher_is_better, comparable)
        rows.append(_row(base, f"within:{name}", within[name], best))
    across = None
    if len(within) > 1:
        across = agreement(complete, direction.higher_is_better)
        best = _best(complete, direction.higher_is_better, comparable)
        rows.append(_row(base, "across", across, best))
    result = verdict(within, across, min_pair_share, min_w)
    overall = across or (next(iter(within.values())) if within else Agreement(np.nan, np.nan, 0, 0))
    reason = ""
    best = _best(complete, direction.higher_is_better, comparable)
    if result == INSUFFICIENT:
        reason = insufficient_reason(means, complete, arch) or "no model has a defined mean"
        best = ""  # nothing was tested: the summary (with intervals) says which method is best
        for row in rows:
            row["best_method"] = ""
    rows.append(
        {
            **_row(base, "verdict", overall, best),
            "verdict": result,
            "reason": reason,
        }
    )
    return rows


def _row(base: Mapping[str, object], scope: str, agreed: Agreement, best: str) -> dict[str, object]:
    """One output row of :func:`reliability_test`."""
    return {
        **base,
        "scope": scope,
        "n_models": agreed.n_models,
        "n_methods": agreed.n_methods,
        "pair_share": agreed.pair_share,
        "kendalls_w": agreed.kendalls_w,
        "best_method": best,
        "verdict": "",
        "reason": "",
    }


def verdicts(table: pd.DataFrame) -> pd.DataFrame:
    """Only the verdict rows of a :func:`reliability_test` table."""
    return table[table["scope"] == "verdict"].reset_index(drop=True)
