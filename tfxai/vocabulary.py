"""One parameter vocabulary for every method and metric, and the names it replaces.

tfxai names a parameter that means the same thing the same way in every method and metric:

* ``n_samples``: how many random samples (noisy copies, perturbations, perturbed masks,
  expected-gradient draws) are drawn per image;
* ``sigma``: the standard deviation of Gaussian input noise, in [0, 1] input units (σ·255 on
  0..255 images);
* ``fill``: what replaces hidden or removed pixels: ``zero`` (black), ``mean`` (the image's
  channel mean) or ``blur`` (a Gaussian blur of the image, σ = ``blur_sigma`` px).

The names of the reference libraries (shap's ``nsamples``, lime's ``num_samples`` and
``hide_color``, Captum's ``n_perturb_samples``, ``nt_samples`` and ``stdevs``, tf-keras-vis's
``smooth_samples`` and ``smooth_noise``, the ROAD code's ``noise_std``) and the names of tfxai 0.x
(``n``, ``samples``, ``noise``, ``n_perturbations``; the fill ``"0"``) are accepted as aliases of
the canonical name: :func:`canonical_names` renames them when a method or metric is built, so the
recorded ``method_params``/``metric_params`` always use the canonical names.

Results folders written by tfxai 0.x record the old names. :func:`migrate_params_json` rewrites
such a recorded parameter string to today's, and every reader of a results folder (the resume
keys, the attribution store's index, the merge, the analysis) applies it, so an old folder
resumes without recomputing anything and its rows group with new ones.

TensorFlow-free: the analysis reads old folders without importing it. The canonical names are
the ones in the methods' and metrics' ``params_spec``; ``tests/test_vocabulary.py`` checks that
every alias below names a parameter its owner declares.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

__all__ = ["ALIASES", "VALUE_ALIASES", "VOCABULARY", "aliases_for", "canonical_names",
           "migrate_params_json", "migrate_row"]

#: the canonical names and what they mean (docs/conventions.md restates them)
VOCABULARY: dict[str, str] = {
    "n_samples": "random samples drawn per image",
    "sigma": "std of Gaussian input noise, [0, 1] input units",
    "fill": "replacement of hidden pixels: zero, mean or blur",
}

_TUNNEL = {"n": "n_samples", "nt_samples": "n_samples", "smooth_samples": "n_samples",
           "nb_samples": "n_samples", "stdevs": "sigma", "smooth_noise": "sigma"}

#: ``{owner: {alias: canonical name}}``; the owner is a method, noise tunnel or metric name.
#: Each alias is the name of a reference library (named in the comment) or of tfxai 0.x.
ALIASES: dict[str, dict[str, str]] = {
    "shap": {"nsamples": "n_samples"},                                   # shap
    "lime": {"num_samples": "n_samples", "hide_color": "fill"},          # lime
    "gradient_shap": {"samples": "n_samples",                            # tfxai 0.x
                      "noise": "sigma", "stdevs": "sigma"},              # 0.x, Captum
    "smoothgrad": _TUNNEL,            # 0.x n; Captum nt_samples, stdevs; tf-keras-vis smooth_*;
    "smoothgrad_sq": _TUNNEL,         # Xplique nb_samples
    "vargrad": _TUNNEL,
    "infidelity": {"n_perturbations": "n_samples",                       # tfxai 0.x
                   "n_perturb_samples": "n_samples"},                    # Captum
    "max_sensitivity": {"n_perturb_samples": "n_samples"},               # Captum
    "avg_sensitivity": {"n_perturb_samples": "n_samples"},               # Captum
    "road": {"noise_std": "sigma"},                                      # ROAD reference code
}

#: ``{canonical name: {alias value: canonical value}}``: values renamed with the name
VALUE_ALIASES: dict[str, dict[Any, Any]] = {"fill": {"0": "zero", 0: "zero"}}


def aliases_for(owner: str) -> dict[str, str]:
    """``{alias: canonical}`` of one method, tunnel or metric (empty when it has none)."""
    return dict(ALIASES.get(owner, {}))


def canonical_names(owner: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """``given`` with ``owner``'s aliases renamed to the canonical names and alias values
    (``fill="0"``) replaced; raises ``ValueError`` when a parameter is given under two names."""
    aliases = ALIASES.get(owner, {})
    out: dict[str, Any] = {}
    source: dict[str, str] = {}
    for name, value in given.items():
        canonical = aliases.get(name, name)
        if canonical in out:
            raise ValueError(
                f"{owner}: parameters {source[canonical]!r} and {name!r} are the same parameter "
                f"({canonical!r}); give it once"
            )
        out[canonical] = _canonical_value(canonical, value)
        source[canonical] = name
    return out


def _canonical_value(name: str, value: Any) -> Any:
    table = VALUE_ALIASES.get(name)
    if table is None or isinstance(value, bool):
        return value
    try:
        return table.get(value, value)
    except TypeError:  # unhashable (an array)
        return value


def migrate_params_json(owner: str, text: str) -> str:
    """A recorded ``method_params``/``metric_params`` string in today's names.

    ``owner`` is the ``method`` (``saliency+smoothgrad``: the tunnel's parameters, with the inner
    method's nested under ``inner``) or ``metric`` column of the row. A string that holds no old
    name (found by a substring scan, without parsing) or is not a JSON object is returned
    unchanged; results are cached per distinct string, so reading a large folder costs little.
    """
    return _migrate(owner, text)


@lru_cache(maxsize=4096)
def _migrate(owner: str, text: str) -> str:
    if not text or not any(a in text for a in _OLD_TOKENS):
        return text
    try:
        params = json.loads(text)
    except ValueError:
        return text
    if not isinstance(params, dict):
        return text
    migrated = _migrate_dict(owner, params)
    if migrated == params:
        return text
    # the form of tfxai.params.canonical_params (not imported: params imports this module);
    # tests/test_vocabulary.py checks the two agree
    return json.dumps(migrated, sort_keys=True, separators=(",", ":"))


def _migrate_dict(owner: str, params: dict[str, Any]) -> dict[str, Any]:
    base, _, tunnel = owner.partition("+")
    if tunnel:
        out = canonical_names(tunnel, {k: v for k, v in params.items() if k != "inner"})
        if isinstance(params.get("inner"), dict):
            out["inner"] = _migrate_dict(base, params["inner"])
        return out
    try:
        return canonical_names(base, params)
    except ValueError:  # both names recorded: not written by tfxai; left as it is
        return params


#: quoted names whose presence makes a recorded string worth parsing
_OLD_TOKENS = tuple(sorted({f'"{a}"' for table in ALIASES.values() for a in table}
                           | {'"fill":"0"', '"fill":0'}))


def migrate_row(row: dict[str, Any]) -> dict[str, Any]:
    """A results row (``scores.csv``, ``curves.csv``, ``errors.csv``) with its recorded
    ``method_params`` and ``metric_params`` in today's names (the row itself when unchanged)."""
    updates = {}
    for column, owner in (("method_params", "method"), ("metric_params", "metric")):
        text = row.get(column)
        if text:
            new = _migrate(str(row.get(owner) or ""), text)
            if new != text:
                updates[column] = new
    return {**row, **updates} if updates else row
