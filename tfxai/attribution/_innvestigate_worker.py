"""The innvestigate worker process: Keras 2 (``tf_keras``) in TF1 graph mode, apart from tfxai.

innvestigate 2.1.2 runs on Keras 2 only and builds its analyzers in TF1 graph mode
(``tf.compat.v1.disable_eager_execution()``, which cannot be undone in a process). tfxai runs on
Keras 3. :mod:`tfxai.attribution.innvestigate` therefore starts this file in a child Python
process with ``TF_USE_LEGACY_KERAS=1`` (so that ``tf.keras``, which innvestigate imports, is
``tf_keras``). The file is executed with :func:`runpy.run_path` and imports nothing from
``tfxai``: the child loads neither the package nor Keras 3, and may even be another Python
environment. The caller passes the connection as the global ``_CONN``.

Protocol over a :class:`multiprocessing.connection.Connection` (pickled tuples):

* worker → caller, once at start: ``("ready", versions)`` or ``("error", traceback_text)``;
* ``("load", path)`` → ``("ok", info)``: load a model mapping preprocessed input to logits (no
  softmax) and drop the cached analyzers. ``path`` is either a *bundle* directory written by
  :mod:`tfxai.attribution.innvestigate` (``model.json``: the Keras 2 config translated by
  ``_innvestigate_config``; ``weights.npz`` + ``manifest.json``: numpy arrays per layer path and
  weight name; an optional probe batch and the logits Keras 3 computed for it, which the rebuilt
  model must reproduce), or a Keras 2 ``.h5``/SavedModel file that ``tf_keras`` loads itself;
* ``("analyze", method, kwargs, x, targets)`` → ``("ok", relevance float32 array)``: the
  analyzer ``innvestigate.create_analyzer(method, model, neuron_selection_mode="index",
  **kwargs)`` (built once per ``(method, kwargs)``) applied to ``x`` for the neurons ``targets``;
* ``("close",)``: exit.

Any exception in a request is answered with ``("error", traceback_text)`` and the worker goes on.
"""

from __future__ import annotations

import json
import os
import traceback


def _dist_version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _keras_version(tf) -> str:  # noqa: ANN001
    """The version of the Keras that ``tf.keras`` is (tf_keras, or Keras itself)."""
    if tf.keras.layers.Dense.__module__.startswith("tf_keras"):
        import tf_keras

        return str(tf_keras.__version__)
    import keras

    return str(getattr(keras, "__version__", "?"))


def _create(innvestigate, method: str, model, kwargs: dict):  # noqa: ANN001
    """``create_analyzer`` whose model-check failures say which layers are the problem.

    innvestigate reports a layer it does not know as a warning and then raises a bare
    ``NotImplementedError``; the warning text and the layers outside innvestigate's list of
    supported layers are put into the exception.
    """
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            return innvestigate.create_analyzer(
                method, model, neuron_selection_mode="index", **kwargs)
        except Exception as exc:
            notes = " | ".join(str(w.message) for w in caught)
            try:
                from innvestigate.backend import checks

                known = checks.CONVNET_LAYERS
                unknown = [f"{lay.name} ({type(lay).__name__})" for lay in model.layers
                           if not isinstance(lay, known)]
            except Exception:  # noqa: BLE001 - the note is best effort
                unknown = []
            if unknown:
                notes += " | layers innvestigate does not support: " + ", ".join(unknown)
            raise RuntimeError(
                f"innvestigate cannot build {method!r} for model {model.name!r}: "
                f"{type(exc).__name__}: {exc} {notes}".strip()
            ) from exc


def _find_layer(model, path: str):  # noqa: ANN001, ANN202
    layer = model
    for part in path.split("/"):
        layer = layer.get_layer(part)
    return layer


def _short(name: str) -> str:
    return name.split(":")[0].rsplit("/", 1)[-1]


def _reserve_names(tf, model) -> None:  # noqa: ANN001
    """Make Keras 2's automatic layer names skip the names of the loaded model.

    A model rebuilt from a config keeps its names (``add``, ``add_1``), but Keras 2's name
    counters do not see them, so innvestigate's own layers would be called ``add`` too and its
    analyzer model would fail on duplicate names.
    """
    import re
    import sys

    backend = sys.modules.get(tf.keras.backend.clear_session.__module__)
    uid_map = getattr(backend, "get_default_graph_uid_map", None)
    if uid_map is None:
        return
    counters = uid_map()

    def walk(layer):  # noqa: ANN001, ANN202
        yield layer
        for inner in getattr(layer, "layers", []) or []:
            yield from walk(inner)

    for layer in walk(model):
        match = re.fullmatch(r"(.*?)(?:_(\d+))?", layer.name)
        base, number = match.group(1), int(match.group(2) or 0)
        key = ("", base)
        counters[key] = max(counters[key], number + 1)


def _set_weights(layer, path: str, named: list) -> None:  # noqa: ANN001
    """Set ``layer``'s weights from ``[(name, array)]``: by weight name when the names match,
    else in order; shapes are checked either way."""
    current = layer.weights
    if len(current) != len(named):
        raise ValueError(f"layer {path!r}: {len(named)} weights given, the Keras 2 layer has "
                         f"{len(current)} ({[w.name for w in current]})")
    by_name = {name: arr for name, arr in named}
    names = [_short(w.name) for w in current]
    if sorted(names) == sorted(by_name) and len(by_name) == len(named):
        arrays = [by_name[n] for n in names]
    else:
        arrays = [arr for _, arr in named]
    for var, arr in zip(current, arrays):  # noqa: B905 - lengths checked; Python 3.9 workers
        if tuple(var.shape) != tuple(arr.shape):
            raise ValueError(f"layer {path!r}: weight {var.name} has shape {tuple(var.shape)}, "
                             f"the given array {tuple(arr.shape)}")
    layer.set_weights(arrays)


def _load_bundle(tf, np, path: str) -> tuple:  # noqa: ANN001
    """Rebuild the model of a bundle directory; check it against the probe logits."""
    with open(os.path.join(path, "model.json"), encoding="utf-8") as f:
        config = json.load(f)
    with open(os.path.join(path, "manifest.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    model = tf.keras.models.model_from_config(config)
    with np.load(os.path.join(path, "weights.npz")) as arrays:
        for item in manifest["layers"]:
            named = [(w["name"], arrays[w["key"]]) for w in item["weights"]]
            _set_weights(_find_layer(model, item["path"]), item["path"], named)
        probe = manifest.get("probe")
        diff = None
        if probe:
            x, expected = arrays[probe["x"]], arrays[probe["y"]]
            got = np.asarray(model.predict(x, verbose=0), np.float64)
            diff = float(np.abs(got - expected).max())
            scale = float(np.abs(expected).max())
            if not np.isfinite(diff) or diff > probe.get("rtol", 1e-3) * max(scale, 1e-3):
                raise RuntimeError(
                    f"the model rebuilt under Keras 2 does not compute the Keras 3 logits: max "
                    f"abs difference {diff:.3g} for logits up to {scale:.3g}")
    return model, diff


def _start(conn):  # noqa: ANN001, ANN202 - a multiprocessing Connection
    """Import TensorFlow (Keras 2, graph mode) and innvestigate and send the caller their
    versions: ``(tf, np, innvestigate)``, or ``None`` when that failed (the error was sent)."""
    try:
        import sys

        import numpy as np
        import tensorflow as tf

        keras_version = _keras_version(tf)
        if not keras_version.startswith("2."):
            raise RuntimeError(
                f"tf.keras is Keras {keras_version} in the innvestigate worker; innvestigate needs "
                "Keras 2: install tf_keras matching TensorFlow and run with TF_USE_LEGACY_KERAS=1")
        tf.compat.v1.disable_eager_execution()
        import innvestigate

        conn.send(("ready", {
            "python": sys.version.split()[0],
            "executable": sys.executable,
            "tensorflow": tf.__version__,
            "keras": keras_version,
            "numpy": np.__version__,
            "innvestigate": _dist_version("innvestigate") or getattr(
                innvestigate, "__version__", "?"),
        }))
    except BaseException:  # noqa: BLE001 - reported to the caller
        conn.send(("error", traceback.format_exc()))
        return None
    return tf, np, innvestigate


def _load(tf, np, path: str) -> tuple:  # noqa: ANN001
    """``(model, probe difference or None)``: the model of a bundle directory (checked against
    its probe) or of a Keras 2 file."""
    if os.path.isdir(path) and os.path.exists(os.path.join(path, "model.json")):
        return _load_bundle(tf, np, path)
    return tf.keras.models.load_model(path, compile=False), None


def _analyze(innvestigate, np, model, analyzers: dict, msg: tuple):  # noqa: ANN001, ANN202
    """The relevance asked by ``("analyze", method, kwargs, x, targets)``; the analyzer is built
    once per ``(method, kwargs)`` and kept in ``analyzers``."""
    _, method, kwargs, x, targets = msg
    if model is None:
        raise RuntimeError("no model loaded in the innvestigate worker")
    key = (method, repr(sorted(kwargs.items())))
    if key not in analyzers:
        analyzers[key] = _create(innvestigate, method, model, kwargs)
    rel = analyzers[key].analyze(x, neuron_selection=np.asarray(targets))
    return np.asarray(rel, dtype=np.float32)


def serve(conn) -> None:  # noqa: ANN001 - a multiprocessing Connection
    """Answer requests on ``conn`` until ``close`` or the caller goes away."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    modules = _start(conn)
    if modules is None:
        return
    tf, np, innvestigate = modules
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
                model = None
                model, diff = _load(tf, np, msg[1])
                _reserve_names(tf, model)
                conn.send(("ok", {"outputs": int(model.output_shape[-1]),
                                  "layers": len(model.layers), "probe_max_abs_diff": diff}))
            elif op == "analyze":
                conn.send(("ok", _analyze(innvestigate, np, model, analyzers, msg)))
            else:
                raise ValueError(f"unknown request {op!r}")
        except BaseException:  # noqa: BLE001 - reported to the caller
            conn.send(("error", traceback.format_exc()))


if __name__ == "__tfxai_innvestigate_worker__":
    serve(_CONN)  # type: ignore[name-defined]  # noqa: F821 - injected by runpy init_globals
