"""Quadrature rules of path-integral attributions (numpy only, no model).

:func:`ig_path` gives the path positions α_k and weights w_k of integrated gradients' fixed rules
[Sundararajan, Taly & Yan 2017, eq. 3]; :func:`gauss_legendre` is the n-point Gauss–Legendre rule
on [0, 1], used by IG's ``gauss_legendre`` rule, by gradient SHAP's ``gauss_legendre`` α sampling and
on each segment of IG's ``adaptive`` rule (:mod:`tfxai.attribution.integrated_adaptive`).
"""

from __future__ import annotations

import numpy as np

#: IG's rules with a fixed path (the ``adaptive`` rule has none)
FIXED_RULES = ("riemann_right", "trapezoid", "gauss_legendre")


def gauss_legendre(n: int) -> tuple[np.ndarray, np.ndarray]:
    """The n-point Gauss–Legendre rule on [0, 1]: nodes (increasing) and weights (Σ w = 1).

    numpy's :func:`numpy.polynomial.legendre.leggauss` on [−1, 1], mapped by α = (t + 1)/2,
    w = w_t/2. Exact for polynomials of degree ≤ 2n − 1; every node is interior (no gradient at
    the baseline or the input) [Gauss 1814; e.g. Davis & Rabinowitz, "Methods of Numerical
    Integration", §2.7].
    """
    if n < 1:
        raise ValueError(f"gauss_legendre needs n >= 1, got {n}")
    t, w = np.polynomial.legendre.leggauss(int(n))
    return (t + 1.0) / 2.0, w / 2.0


def ig_path(steps: int, rule: str) -> tuple[np.ndarray, np.ndarray]:
    """Path positions α_k and quadrature weights w_k (Σ w = 1) of a fixed rule.

    ``riemann_right``: α = k/m, k = 1..m, w = 1/m (eq. 3 of Sundararajan 2017).
    ``trapezoid``: α = k/m, k = 0..m, w = 1/m with the two ends halved (m + 1 gradients).
    ``gauss_legendre``: the m-point Gauss–Legendre rule on [0, 1] (:func:`gauss_legendre`;
    m gradients, exact for a path integrand that is a polynomial of degree ≤ 2m − 1).
    The ``adaptive`` rule has no fixed path: see :class:`tfxai.attribution.integrated.
    IntegratedGradients`.
    """
    if rule == "gauss_legendre":
        alphas, weights = gauss_legendre(steps)
    elif rule == "riemann_right":
        alphas = np.arange(1, steps + 1, dtype=np.float64) / steps
        weights = np.full(steps, 1.0 / steps)
    elif rule == "trapezoid":
        alphas = np.arange(0, steps + 1, dtype=np.float64) / steps
        weights = np.full(steps + 1, 1.0 / steps)
        weights[[0, -1]] *= 0.5
    else:
        raise ValueError(f"rule must be one of {FIXED_RULES}, got {rule!r}")
    return alphas.astype(np.float32), weights.astype(np.float32)
