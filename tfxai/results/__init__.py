"""Results: the schema of the CSV files, crash-safe appends, resume keys and the attribution store.

* :mod:`~tfxai.results.schema`: file names, columns and keys (TF-free, numpy-free);
* :mod:`~tfxai.results.csvio`: the one crash-safe append idiom, CSV tables, key indexes;
* :mod:`~tfxai.results.store`: raw attributions in HDF5 part files;
* :mod:`~tfxai.results.folder`: a results folder (:class:`ResultsDir`);
* :mod:`~tfxai.results.merge`: merging folders (Ray shards, ``tfxai merge``).

Crash safety: a CSV batch is appended with one ``write`` of complete lines and ``fsync`` (a torn
last line is cut when the file is opened again); an attribution part is written to a temporary
file and renamed into place; re-running a command skips the keys already written.
"""

from __future__ import annotations

from tfxai.results.csvio import CsvTable, KeyIndex, ResultsWriteError, _fmt
from tfxai.results.folder import ResultsDir
from tfxai.results.merge import MERGE_KEYS, MergeSummary, ResultsMerger, merge_results
from tfxai.results.schema import (
    ATTRIBUTIONS_DIR,
    CURVES_COLUMNS,
    CURVES_FILE,
    ERRORS_COLUMNS,
    ERRORS_FILE,
    MODELS_FILE,
    PREDICTION_KEY,
    PREDICTIONS_COLUMNS,
    PREDICTIONS_FILE,
    ROAR_FILE,
    RUNS_FILE,
    SCORE_KEY,
    SCORES_COLUMNS,
    SCORES_FILE,
)
from tfxai.results.store import AttributionStore, StoredItem, params_hash

__all__ = [
    "PREDICTIONS_COLUMNS", "SCORES_COLUMNS", "ERRORS_COLUMNS", "CURVES_COLUMNS",
    "PREDICTION_KEY", "SCORE_KEY", "PREDICTIONS_FILE", "SCORES_FILE", "CURVES_FILE",
    "ERRORS_FILE", "RUNS_FILE", "ATTRIBUTIONS_DIR", "ROAR_FILE", "MODELS_FILE",
    "ResultsWriteError", "CsvTable", "KeyIndex", "AttributionStore", "StoredItem", "ResultsDir",
    "params_hash", "merge_results", "MergeSummary", "ResultsMerger", "MERGE_KEYS", "_fmt",
]
