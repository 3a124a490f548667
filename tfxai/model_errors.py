"""The error and the warning of model loading, shared by :mod:`tfxai.models`,
:mod:`tfxai.model_registry`, :mod:`tfxai.backbone` and :mod:`tfxai.legacy`.

They live in this leaf module so that every loader can raise them without importing the others;
:mod:`tfxai.models` re-exports both (``tfxai.models.ModelLoadError``).
"""

from __future__ import annotations

from tfxai.messages import OptionMessage

__all__ = ["ModelLoadError", "RandomWeightsWarning"]


class ModelLoadError(OptionMessage, ValueError):
    """A model name, file or weights option that cannot be loaded. The message says what to do
    (options named as ``{opt:weights}``: see :mod:`tfxai.messages`)."""


class RandomWeightsWarning(UserWarning):
    """Emitted when a backbone is built with random weights: its explanations mean nothing."""
