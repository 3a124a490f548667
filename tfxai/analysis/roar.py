"""ROAR view (Hooker 2019; Loreth 2023): retrained accuracy vs removed fraction, per method.

``roar.csv`` has one row per (method, fraction, seed) with the test accuracy of the model retrained on
images whose top ``fraction`` of pixels by that method were replaced. The ``random`` method is the
baseline. A method is better when its accuracy drops more than random's.
"""

from __future__ import annotations

import pandas as pd

from .summary import STAT_COLUMNS, describe

RANDOM_METHOD = "random"


def roar_summary(roar: pd.DataFrame) -> pd.DataFrame:
    """Mean, sample std (ddof=1) and counts of ``accuracy`` over seeds, per (method, fraction).

    Adds ``delta_vs_random``: the method's mean accuracy minus random's at the same fraction (negative
    means the method removed more useful information than random, i.e. it is better).
    """
    columns = ["method", "fraction", *STAT_COLUMNS, "delta_vs_random"]
    if roar is None or roar.empty:
        return pd.DataFrame(columns=columns)
    data = roar.copy()
    data["fraction"] = pd.to_numeric(data["fraction"], errors="coerce")
    rows = []
    for (method, fraction), frame in data.groupby(["method", "fraction"], sort=True):
        rows.append({"method": method, "fraction": fraction, **describe(frame["accuracy"])})
    table = pd.DataFrame(rows, columns=columns[:-1])
    random = table[table["method"] == RANDOM_METHOD].set_index("fraction")["mean"]
    table["delta_vs_random"] = table["mean"] - table["fraction"].map(random)
    return table
