"""One command per published study: ``tfxai study NAME`` (see docs/studies.md).

Each study is a named, documented preset of a published protocol — its methods with the study's
parameters, its metrics, models and data — that composes tfxai's own runs (``tfxai.run``,
``tfxai.training``), writes ``study.csv`` (the study's published cells next to ours, and its
findings) and a report whose first section shows them side by side.

=========================  ====================================================================
``gattas2020``             IOU / IOU* of DeepLIFT, guided Grad-CAM, LIME (top 5), SHAP, by confidence
``erdem2021-augment``      SSIM robustness of explanations to rotations and G'MIC filters
``erdem2021-reliability``  does the order of methods by infidelity / sensitivity survive across models
``loreth2023-roar``        RemOve And Retrain against a random ranking (small_cnn, synthetic shapes)
``imagenet50-occlusion``   confidence after occluding subject / background, ROAD, mIoU vs masks
=========================  ====================================================================

The published numbers live in ``published.json`` (:mod:`tfxai.studies.published`).
"""

from __future__ import annotations

from tfxai.studies.base import (
    LITE_MODELS,
    STUDY_COLUMNS,
    Study,
    StudyError,
    StudyOptions,
    StudyResult,
    run_study,
)
from tfxai.studies.erdem import Erdem2021Augment, Erdem2021Reliability
from tfxai.studies.gattas import Gattas2020
from tfxai.studies.imagenet50 import ImageNet50Occlusion
from tfxai.studies.loreth import Loreth2023Roar

__all__ = [
    "LITE_MODELS",
    "STUDIES",
    "STUDY_COLUMNS",
    "Study",
    "StudyError",
    "StudyOptions",
    "StudyResult",
    "get_study",
    "list_studies",
    "run_study",
]

#: the studies by name, in the order of REFERENCE.md
STUDIES: dict[str, Study] = {
    s.name: s
    for s in (Gattas2020(), Erdem2021Augment(), Erdem2021Reliability(), Loreth2023Roar(),
              ImageNet50Occlusion())
}


def list_studies() -> list[str]:
    """The study names."""
    return list(STUDIES)


def get_study(name: str) -> Study:
    """The study called ``name`` (:class:`StudyError` naming the known ones otherwise)."""
    if name not in STUDIES:
        raise StudyError(f"unknown study {name!r}; known: {', '.join(STUDIES)}")
    return STUDIES[name]
