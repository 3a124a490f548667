"""Split views of the augmentation-robustness metric (Erdem): rotations vs filters, and per augmentation.

The ``ssim_augmentation`` metric has one ``variant`` per augmentation. Variants named ``rotate_<angle>`` are
*rotations*; every other variant (``boost_chromaticity``, ``freaky_details``, ``normalize_local``,
``mighty_details``, ``sharpen``, ...) is a *filter*. The ``all`` group pools every variant (of one
setting: when the metric was computed with several parameter sets, e.g. two map conventions, the
tables gain a ``metric`` column naming each, :mod:`tfxai.analysis.settings`). Statistics are
those of :func:`tfxai.analysis.summary.describe` (sample std, ddof=1) over image × variant rows; with
``ci`` the bootstrap interval resamples images, each with all its variants of the group.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from .settings import base_name
from .summary import CI_COLUMNS, STAT_COLUMNS, Bootstrap, describe_rows, summarise

SSIM_METRIC = "ssim_augmentation"
ROTATIONS, FILTERS, ALL = "rotations", "filters", "all"


def augmentation_group(variant: str) -> str:
    """``rotations`` for ``rotate_*`` variants, ``filters`` otherwise."""
    return ROTATIONS if str(variant).startswith("rotate") else FILTERS


def ssim_rows(scores: pd.DataFrame, metric: str = SSIM_METRIC) -> pd.DataFrame:
    """The rows of ``metric`` (any of its settings) with an ``augmentation_group`` column."""
    rows = scores[scores["metric"].map(base_name) == metric].copy()
    rows["augmentation_group"] = [augmentation_group(v) for v in rows["variant"]]
    return rows


def _with_setting(rows: pd.DataFrame, by: Sequence[str]) -> list[str]:
    """``by``, led by ``metric`` when the rows hold several settings of the metric."""
    return ["metric", *by] if rows["metric"].nunique() > 1 and "metric" not in by else list(by)


def ssim_groups(
    scores: pd.DataFrame,
    by: Sequence[str] = ("model_id", "method"),
    metric: str = SSIM_METRIC,
    ci: Bootstrap | None = None,
) -> pd.DataFrame:
    """Mean/std/count per ``by`` × (rotations, filters, all) for ``metric``; empty when it is absent.
    With ``ci``, also the bootstrap interval over images (:data:`CI_COLUMNS`)."""
    rows = ssim_rows(scores, metric)
    by = _with_setting(rows, by) if not rows.empty else list(by)
    columns = [*by, "augmentation_group", *STAT_COLUMNS, *(CI_COLUMNS if ci is not None else ())]
    if rows.empty:
        return pd.DataFrame(columns=columns)
    pooled = rows.assign(augmentation_group=ALL)
    both = pd.concat([rows, pooled], ignore_index=True)
    order = {ROTATIONS: 0, FILTERS: 1, ALL: 2}
    out = []
    for group, frame in both.groupby([*by, "augmentation_group"], sort=True, dropna=False):
        group = group if isinstance(group, tuple) else (group,)
        out.append(
            {
                **dict(zip([*by, "augmentation_group"], group, strict=True)),
                **describe_rows(frame, metric, ci),
            }
        )
    table = pd.DataFrame(out, columns=columns)
    table["_order"] = table["augmentation_group"].map(order)
    return (
        table.sort_values([*by, "_order"], kind="stable")
        .drop(columns="_order")
        .reset_index(drop=True)
    )


def ssim_per_augmentation(
    scores: pd.DataFrame,
    by: Sequence[str] = ("model_id", "method"),
    metric: str = SSIM_METRIC,
    ci: Bootstrap | None = None,
) -> pd.DataFrame:
    """Mean/std/count per ``by`` × augmentation (variant) for ``metric``, with its group."""
    rows = ssim_rows(scores, metric)
    if rows.empty:
        return pd.DataFrame(columns=[*by, "variant", "augmentation_group", *STAT_COLUMNS])
    several = rows["metric"].nunique() > 1
    table = summarise(rows, by=by, ci=ci)
    if not several:
        table = table.drop(columns="metric")
    table = table.drop(columns=[c for c in ("direction", "comparable") if c in table.columns])
    table.insert(list(table.columns).index("variant") + 1, "augmentation_group",
                 [augmentation_group(v) for v in table["variant"]])
    return table
