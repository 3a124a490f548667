"""The results schema (docs/architecture.md): file names, columns and keys of a results folder.

No TensorFlow, no numpy: the pipeline, training, the studies and the analysis all read the
schema from here.

Layout of a results folder::

    predictions.csv   image_id, model, weights, label, predicted, confidence, correct
    scores.csv        one row per image × model × method × metric × variant (SCORES_COLUMNS)
    curves.csv        curve points of curve metrics (deletion, insertion, road)
    errors.csv        per-image failures; the run goes on
    attributions/     raw attributions, one HDF5 file per written batch (see AttributionStore)
    runs.jsonl        one line per command run: its parameters and library versions
    roar.csv          ROAR accuracies (``tfxai roar``), models.csv: a model family's accuracies
"""

from __future__ import annotations

__all__ = ["PREDICTIONS_COLUMNS", "SCORES_COLUMNS", "CURVES_COLUMNS", "ERRORS_COLUMNS", "PREDICTION_KEY", "SCORE_KEY", "PREDICTIONS_FILE", "SCORES_FILE", "CURVES_FILE", "ERRORS_FILE", "RUNS_FILE", "ATTRIBUTIONS_DIR", "ROAR_FILE", "MODELS_FILE", "MODELS_CSV_COLUMNS", "ROAR_CSV_COLUMNS"]

PREDICTIONS_FILE = "predictions.csv"
SCORES_FILE = "scores.csv"
CURVES_FILE = "curves.csv"
ERRORS_FILE = "errors.csv"
RUNS_FILE = "runs.jsonl"
ATTRIBUTIONS_DIR = "attributions"
ROAR_FILE = "roar.csv"
MODELS_FILE = "models.csv"


PREDICTIONS_COLUMNS = ["image_id", "model", "weights", "label", "predicted", "confidence", "correct"]


SCORES_COLUMNS = [
    "image_id", "model", "weights", "method", "method_params", "metric", "metric_params",
    "variant", "value", "target", "label", "predicted", "confidence", "seconds", "seed", "note",
    "metric_seconds", "extra",
]


CURVES_COLUMNS = [
    "image_id", "model", "weights", "method", "method_params", "metric", "metric_params",
    "variant", "x", "y",
]


ERRORS_COLUMNS = ["time", "image_id", "path", "stage", "model", "method", "metric", "error"]


PREDICTION_KEY = ("image_id", "model", "weights")


SCORE_KEY = ("image_id", "model", "weights", "method", "method_params", "metric", "metric_params")

#: ``models.csv``: one row per trained model of a family (``tfxai finetune``)
MODELS_CSV_COLUMNS = (
    "model", "file", "base_model", "weights", "fraction", "n_train", "n_test", "accuracy",
    "macro_f1", "epochs", "seed",
)
#: ``roar.csv``: one row per method × fraction × seed (``tfxai roar``)
ROAR_CSV_COLUMNS = ("method", "fraction", "seed", "accuracy")
