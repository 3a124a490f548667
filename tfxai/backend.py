"""Keras 3 on TensorFlow: the one place tfxai imports Keras.

tfxai's gradient code (``tf.GradientTape``, ``tf.custom_gradient``, ``tf.function``) runs on
TensorFlow, so Keras must use its TensorFlow backend. ``KERAS_BACKEND`` defaults to
``tensorflow`` here when it is unset; any other value, or a ``keras.json`` that selects another
backend before tfxai is imported, stops the import with a message saying how to fix it.

Every tfxai module that needs Keras does ``from tfxai.backend import keras``.
"""

from __future__ import annotations

import os

from tfxai import BackendError

__all__ = ["keras", "BackendError", "check_backend"]

_FIX = ("tfxai needs Keras 3 on its TensorFlow backend: set KERAS_BACKEND=tensorflow "
        "(or \"backend\": \"tensorflow\" in ~/.keras/keras.json) before importing tfxai or keras")


def check_backend(name: str | None) -> None:
    """Raise :class:`BackendError` unless ``name`` is ``tensorflow``."""
    if name != "tensorflow":
        raise BackendError(f"Keras backend is {name!r}. {_FIX}")


os.environ.setdefault("KERAS_BACKEND", "tensorflow")
check_backend(os.environ["KERAS_BACKEND"])

import keras  # noqa: E402

if not hasattr(keras, "version") or int(keras.version().split(".")[0]) < 3:
    raise BackendError(f"tfxai needs Keras 3 (found {getattr(keras, '__version__', '?')}); "
                       "pip install 'keras>=3'")
check_backend(keras.backend.backend())
