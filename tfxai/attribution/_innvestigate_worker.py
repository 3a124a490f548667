"""The innvestigate worker process (graph mode, isolated from the caller's eager TensorFlow).

innvestigate 2.1.2 builds its analyzers with Keras in TF1 graph mode, which needs
``tf.compat.v1.disable_eager_execution()`` before any model exists, and that cannot be undone in
a process. :mod:`tfxai.attribution.lrp` therefore starts this file in a separate process with the
``spawn`` start method. The file is executed with :func:`runpy.run_path` and imports nothing from
``tfxai``, so the worker does not load the package (and its eager models) at all.

Protocol over a :class:`multiprocessing.connection.Connection` (pickled tuples):

* worker → caller, once at start: ``("ready", {"tensorflow": ..., "innvestigate": ...})`` or
  ``("error", traceback_text)``;
* ``("load", model_path)`` → ``("ok", {"outputs": n_outputs})``: load a saved Keras model (logits,
  no softmax; preprocessed input) and drop the cached analyzers;
* ``("analyze", method, kwargs, x, targets)`` → ``("ok", relevance float32 array)``: the
  analyzer ``innvestigate.create_analyzer(method, model, neuron_selection_mode="index",
  **kwargs)`` (built once per ``(method, kwargs)``) applied to ``x`` for the neurons ``targets``;
* ``("close",)``: exit.

Any exception in a request is answered with ``("error", traceback_text)`` and the worker goes on.
"""

from __future__ import annotations

import os
import traceback


def _create(innvestigate, method: str, model, kwargs: dict):  # noqa: ANN001
    """``create_analyzer`` whose model-check failures carry innvestigate's explanation.

    innvestigate reports unsupported layers as a warning and then raises a bare
    ``NotImplementedError``; the warning text is put into the exception.
    """
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            return innvestigate.create_analyzer(
                method, model, neuron_selection_mode="index", **kwargs)
        except Exception as exc:
            notes = " | ".join(str(w.message) for w in caught)
            raise RuntimeError(
                f"innvestigate cannot build {method!r} for model {model.name!r}: "
                f"{type(exc).__name__}: {exc} {notes}".strip()
            ) from exc


def serve(conn) -> None:  # noqa: ANN001 - a multiprocessing Connection
    """Answer requests on ``conn`` until ``close`` or the caller goes away."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import numpy as np
        import tensorflow as tf

        tf.compat.v1.disable_eager_execution()
        import innvestigate

        conn.send(("ready", {"tensorflow": tf.__version__,
                             "innvestigate": getattr(innvestigate, "__version__", "?")}))
    except BaseException:  # noqa: BLE001 - reported to the caller
        conn.send(("error", traceback.format_exc()))
        return

    model = None
    analyzers: dict = {}
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        op = msg[0]
        if op == "close":
            return
        try:
            if op == "load":
                tf.keras.backend.clear_session()
                analyzers.clear()
                model = tf.keras.models.load_model(msg[1], compile=False)
                conn.send(("ok", {"outputs": int(model.output_shape[-1])}))
            elif op == "analyze":
                _, method, kwargs, x, targets = msg
                if model is None:
                    raise RuntimeError("no model loaded in the innvestigate worker")
                key = (method, tuple(sorted(kwargs.items())))
                if key not in analyzers:
                    analyzers[key] = _create(innvestigate, method, model, kwargs)
                rel = analyzers[key].analyze(x, neuron_selection=np.asarray(targets))
                conn.send(("ok", np.asarray(rel, dtype=np.float32)))
            else:
                raise ValueError(f"unknown request {op!r}")
        except BaseException:  # noqa: BLE001 - reported to the caller
            conn.send(("error", traceback.format_exc()))


if __name__ == "__tfxai_innvestigate_worker__":
    serve(_CONN)  # type: ignore[name-defined]  # noqa: F821 - injected by runpy init_globals
