"""Keras 2 ``.keras`` archives, converted for Keras 3.

tfxai 0.1 ran on TensorFlow 2.14, whose Keras 2.14 wrote ``model.save("model.keras")`` as a zip
archive that Keras 3 cannot read ("Could not deserialize class 'Functional'"): the class paths in
its ``config.json`` no longer exist, some layer options changed, and its ``model.weights.h5``
addresses each layer by a generic, class-derived path. :func:`load_keras2_archive` converts such an
archive into a Keras 3 model with the same layers and weights.

The archive (as Keras 2.14's ``saving_lib`` writes it):

* ``metadata.json``: ``{"keras_version": "2.14.0", "date_saved": ...}``.
* ``config.json``: the model, ``{"module", "class_name", "config", "registered_name",
  "build_config", "compile_config"}``; a ``Functional`` model lives in module
  ``keras.src.engine.functional``, a ``Sequential`` one in ``keras``, layers in ``keras.layers``.
  Each layer of a functional model carries its ``name`` and its ``inbound_nodes`` in the Keras 2
  list form (``[[["conv1", 0, 0, {}]]]``), which Keras 3 still reads.
* ``model.weights.h5``: a model's layers sit under ``_layer_checkpoint_dependencies/<key>``, where
  ``<key>`` is the snake-cased class name, numbered from the second layer of that class on in the
  order of ``model.layers`` (``conv2d``, ``conv2d_1``...; the layer's own name is not used). A
  layer's variables are ``<key>/vars/0``, ``/1``... in the order trainable-then-non-trainable
  (Conv2D: kernel, bias; BatchNormalization: gamma, beta, moving mean, moving variance). A nested
  model repeats the layout under its own key (``functional/_layer_checkpoint_dependencies/...``).
  The ``optimizer`` and ``metrics`` groups are not needed for inference and are ignored.

Conversion: the config is translated (model classes to their Keras 3 modules; ``InputLayer``'s
``batch_input_shape`` to ``batch_shape``; ``BatchNormalization``'s one-element ``axis`` list to an
int; options Keras 3 dropped and that had their neutral value, such as ``DepthwiseConv2D(groups=1)``;
``/`` in layer names, which Keras 3 forbids, to ``_`` as in Keras 3's own DenseNet121; the call
numbers of nested models, which Keras 2 counts from 1) and built by Keras 3; then each layer's
variables are read from the archive and checked for count and shape before they are set, and
weights left over in the archive are an error too. Only built-in Keras layers are converted: a ``Lambda`` layer (its
Python bytecode does not carry over between Python versions), custom layers, subclassed models or
an archive that does not match its config raise :class:`tfxai.models.ModelLoadError` with the way
out: re-save the model as ``.h5`` where it was made, which Keras 3 reads.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from tfxai.backend import keras
from tfxai.model_errors import ModelLoadError

__all__ = ["load_keras2_archive", "convert_config", "keras2_weight_key", "keras3_name"]

_CONFIG = "config.json"
_WEIGHTS = "model.weights.h5"
_DEPS = "_layer_checkpoint_dependencies"

_MODEL_CLASSES = ("Functional", "Sequential")
# Options Keras 3 no longer accepts, dropped when they hold the value that did nothing in Keras 2.
_DROPPED_DEFAULTS: dict[str, dict[str, Any]] = {
    "DepthwiseConv2D": {"groups": 1},
    "SeparableConv2D": {"groups": 1},
}
# Keras 2 random-augmentation layers (identity at inference) carried this option.
_DROPPED_ALWAYS = ("force_generator",)


class _Unsupported(Exception):
    """Something in the archive the converter does not handle (the message says what)."""


def _resave_hint(path: Path) -> str:
    return (
        "Re-save it in the environment it was made in (TensorFlow <= 2.15 with Keras 2): "
        f"python -c \"import tensorflow as tf; tf.keras.models.load_model({str(path)!r})"
        ".save('model.h5')\" - Keras 3 reads Keras 2 .h5 files - then load model.h5"
    )


def _load_error(path: Path, version: str, reason: str) -> Exception:
    return ModelLoadError(
        f"{str(path)!r} was written by Keras {version} (a Keras 2 .keras archive) and cannot be "
        f"converted for Keras 3: {reason}. {_resave_hint(path)}"
    )


def load_keras2_archive(path: str | os.PathLike, version: str) -> keras.Model:
    """The Keras 2 ``.keras`` archive at ``path`` as a Keras 3 model with the same weights.

    Args:
        path: the archive (a zip file with ``config.json`` and ``model.weights.h5``).
        version: the Keras version in its ``metadata.json`` (``"2.14.0"``), for messages.

    Raises:
        tfxai.models.ModelLoadError: anything that cannot be converted; the message names the
            file and says how to re-save it as ``.h5``.
    """
    path = Path(path)
    try:
        return _convert(path)
    except _Unsupported as exc:
        raise _load_error(path, version, str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - zip, json, h5py and Keras raise many types here
        raise _load_error(path, version, f"{type(exc).__name__}: {_first_line(exc)}") from None


def _convert(path: Path) -> keras.Model:
    import h5py

    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise _Unsupported("the file is not a zip archive") from None
    with archive, tempfile.TemporaryDirectory(prefix="tfxai-keras2-") as tmp:
        names = set(archive.namelist())
        missing = [n for n in (_CONFIG, _WEIGHTS) if n not in names]
        if missing:
            other = " (its weights are in another format)" if "model.weights.npz" in names else ""
            raise _Unsupported(f"the archive has no {' and no '.join(missing)}{other}")
        try:
            config = json.loads(archive.read(_CONFIG))
        except ValueError as exc:
            raise _Unsupported(f"{_CONFIG} is not valid JSON ({exc})") from None
        model = _build(config)
        weights = archive.extract(_WEIGHTS, tmp)
        with h5py.File(weights, "r") as store:
            used = _assign_model(model, config, store, "")
            left = [p for p in _weight_groups(store) if p not in used]
            if left:
                raise _Unsupported(
                    f"{_WEIGHTS} holds weights that match no layer of the model ({left[0]})"
                )
    return model


# ------------------------------------------------------------------------------ configuration


def _build(config: Any) -> keras.Model:
    if not isinstance(config, dict) or config.get("class_name") not in _MODEL_CLASSES:
        name = config.get("class_name") if isinstance(config, dict) else type(config).__name__
        raise _Unsupported(
            f"the model is a {name!r}; only functional and Sequential models can be converted "
            "(a subclassed model's code is not in the file)"
        )
    translated = convert_config(config)
    try:
        model = keras.saving.deserialize_keras_object(translated, safe_mode=True)
    except Exception as exc:  # noqa: BLE001
        raise _Unsupported(
            f"Keras 3 cannot rebuild the translated model ({type(exc).__name__}: "
            f"{_first_line(exc)})"
        ) from None
    if not isinstance(model, keras.Model):
        raise _Unsupported(f"config.json describes a {type(model).__name__}, not a model")
    if not model.built:
        raise _Unsupported("the model has no input shape (it was never built)")
    return model


def _first_line(exc: Exception, limit: int = 300) -> str:
    """The gist of an exception's message in one line: Keras' deserialisation errors run over
    pages and end with the cause (``Exception encountered: ...``), which is kept."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    causes = [line for line in lines if line.startswith("Exception encountered:")]
    line = causes[-1] if causes else (lines[0] if lines else "no message")
    return line if len(line) <= limit else line[: limit - 3] + "..."


def convert_config(config: dict[str, Any]) -> dict[str, Any]:
    """A Keras 2 model config (``config.json`` of a Keras 2 ``.keras`` archive) translated for
    ``keras.saving.deserialize_keras_object`` in Keras 3.

    Raises :class:`_Unsupported` (caught by :func:`load_keras2_archive`) for layers that are not
    built-in Keras layers."""
    return _translate(config, top=True)


def _translate(entry: Any, top: bool = False) -> dict[str, Any]:
    if not isinstance(entry, dict) or "class_name" not in entry or "config" not in entry:
        raise _Unsupported(f"unexpected layer entry in {_CONFIG}: {str(entry)[:80]}")
    cls = entry["class_name"]
    cfg = entry["config"]
    name = entry.get("name", cfg.get("name") if isinstance(cfg, dict) else None)
    if cls in _MODEL_CLASSES:
        out = _translate_model(entry, top)
    else:
        out = _translate_layer(entry)
    if not top:  # the entry-level keys a functional model reads for its layers
        out["name"] = keras3_name(name)
        if "inbound_nodes" in entry:
            out["inbound_nodes"] = _rename_refs(_inbound_nodes(entry["inbound_nodes"], name))
    return out


def keras3_name(name: Any) -> Any:
    """A Keras 2 layer name as Keras 3 accepts it: ``/`` (Keras 2 DenseNet121's ``conv1/conv``)
    becomes ``_``, as in Keras 3's own DenseNet121 (``conv1_conv``)."""
    return name.replace("/", "_") if isinstance(name, str) else name


def _rename_refs(refs: Any) -> Any:
    """Layer references (``[name, node, tensor, ...]``, nested in lists) with Keras 3 names."""
    if isinstance(refs, list) and refs and isinstance(refs[0], str):
        return [keras3_name(refs[0]), *refs[1:]]
    if isinstance(refs, list):
        return [_rename_refs(ref) for ref in refs]
    return refs


def _check_unique(layers: list[dict[str, Any]], model: Any) -> None:
    seen: set[str] = set()
    for layer in layers:
        if layer["name"] in seen:
            raise _Unsupported(
                f"model {model!r}: two layers are named {layer['name']!r} once '/' is replaced "
                "by '_' (Keras 3 forbids '/' in names)"
            )
        seen.add(layer["name"])


def _translate_model(entry: dict[str, Any], top: bool) -> dict[str, Any]:
    cls = entry["class_name"]
    module = entry.get("module") or ""
    if not module.startswith("keras"):
        raise _Unsupported(f"model class {cls!r} comes from {module!r}, not from Keras")
    cfg = entry["config"]
    layers = [_translate(layer) for layer in cfg.get("layers", [])]
    _check_unique(layers, cfg.get("name"))
    if cls == "Functional":
        for key in ("input_layers", "output_layers"):
            if key not in cfg:
                raise _Unsupported(f"functional model {cfg.get('name')!r} has no {key}")
        # Keras 2 numbers the calls of a nested model from 1 (its node 0 links its own input to
        # its output and is left out of configs); a Keras 3 model's first call is its node 0.
        # Keras 3 shifts the index itself for a nested Functional named in output_layers.
        nested = {keras3_name(layer["name"]): layer["class_name"]
                  for layer in cfg.get("layers", []) if _starts_with_input(layer)}
        for layer in layers:
            layer["inbound_nodes"] = _shift_nodes(layer.get("inbound_nodes", []), nested)
        outputs = _shift_refs(_rename_refs(cfg["output_layers"]),
                              {k for k, v in nested.items() if v != "Functional"})
        new_cfg = {
            "name": keras3_name(cfg.get("name")),
            "trainable": cfg.get("trainable", True),
            "layers": layers,
            "input_layers": _single(_rename_refs(cfg["input_layers"])),
            "output_layers": _single(outputs),
        }
        return {"module": "keras.src.models.functional", "class_name": "Functional",
                "config": new_cfg, "registered_name": "Functional"}
    new_cfg = {"name": keras3_name(cfg.get("name")), "trainable": cfg.get("trainable", True),
               "layers": layers}
    out = {"module": "keras", "class_name": "Sequential", "config": new_cfg,
           "registered_name": None}
    shape = (entry.get("build_config") or {}).get("input_shape")
    if shape is not None:
        out["build_config"] = {"input_shape": shape}
    return out


def _starts_with_input(entry: dict[str, Any]) -> bool:
    """A nested model whose first layer is an ``InputLayer`` (Keras 2 then skips its node 0)."""
    if entry.get("class_name") not in _MODEL_CLASSES:
        return False
    layers = (entry.get("config") or {}).get("layers") or []
    return bool(layers) and layers[0].get("class_name") == "InputLayer"


def _shift_nodes(nodes: list[Any], nested: dict[str, str]) -> list[Any]:
    return [_shift_refs(node, set(nested)) if isinstance(node, list) else node for node in nodes]


def _shift_refs(refs: Any, names: set[str]) -> Any:
    """``[[layer, node_index, tensor_index, ...], ...]`` with ``node_index - 1`` for the layers in
    ``names``."""
    out = []
    for ref in refs:
        if isinstance(ref, list) and ref and isinstance(ref[0], list):
            out.append(_shift_refs(ref, names))
        elif isinstance(ref, list) and len(ref) >= 3 and ref[0] in names:
            if int(ref[1]) < 1:
                raise _Unsupported(f"unexpected call index {ref[1]} of nested model {ref[0]!r}")
            out.append([ref[0], int(ref[1]) - 1, *ref[2:]])
        else:
            out.append(ref)
    return out


def _single(refs: Any) -> Any:
    """Keras 2 lists a model's inputs as ``[["image", 0, 0]]``; Keras 3 writes one input as
    ``["image", 0, 0]`` and builds a model called on a tensor (not a one-element list) from it."""
    if isinstance(refs, list) and len(refs) == 1 and isinstance(refs[0], list):
        return refs[0]
    return refs


def _translate_layer(entry: dict[str, Any]) -> dict[str, Any]:
    cls = entry["class_name"]
    cfg = dict(entry["config"])
    name = cfg.get("name", "?")
    module = entry.get("module") or ""
    registered = entry.get("registered_name")
    builtin = getattr(keras.layers, cls, None)
    if cls == "Lambda":
        raise _Unsupported(
            f"layer {name!r} is a Lambda layer, whose Python bytecode cannot be carried into "
            "another Python/Keras version"
        )
    if (
        not module.startswith("keras")
        or (registered not in (None, cls))
        or not (isinstance(builtin, type) and issubclass(builtin, keras.layers.Layer))
    ):
        label = registered or f"{module}.{cls}"
        raise _Unsupported(f"layer {name!r} is a custom layer ({label}), not a built-in Keras layer")
    if "name" in cfg:
        cfg["name"] = keras3_name(cfg["name"])
    if isinstance(cfg.get("dtype"), dict):  # a mixed-precision policy: its name is enough
        cfg["dtype"] = (cfg["dtype"].get("config") or {}).get("name", "float32")
    for key in _DROPPED_ALWAYS:
        cfg.pop(key, None)
    for key, neutral in _DROPPED_DEFAULTS.get(cls, {}).items():
        if key in cfg:
            if cfg[key] != neutral:
                raise _Unsupported(f"layer {name!r} ({cls}) uses {key}={cfg[key]!r}, which Keras 3 dropped")
            del cfg[key]
    if cls == "InputLayer":
        if "batch_input_shape" in cfg:
            cfg["batch_shape"] = cfg.pop("batch_input_shape")
        if cfg.get("ragged"):
            raise _Unsupported(f"input {name!r} is ragged, which Keras 3 does not support")
        cfg.pop("ragged", None)
    if cls == "BatchNormalization" and isinstance(cfg.get("axis"), list):
        if len(cfg["axis"]) != 1:
            raise _Unsupported(f"layer {name!r} normalises over several axes {cfg['axis']}")
        cfg["axis"] = int(cfg["axis"][0])
    return {"module": "keras.layers", "class_name": cls, "config": cfg, "registered_name": None}


def _inbound_nodes(nodes: Any, name: str) -> list[Any]:
    """Keras 2 inbound nodes (``[[[layer, node, tensor, kwargs], ...], ...]``), checked: Keras 3
    reads this legacy form, but not tensors passed as keyword arguments."""
    if not isinstance(nodes, list):
        raise _Unsupported(f"layer {name!r}: unexpected inbound_nodes {str(nodes)[:80]}")
    for node in nodes:
        if isinstance(node, dict):  # already the Keras 3 form
            continue
        for item in node:
            if not isinstance(item, list) or len(item) not in (3, 4):
                raise _Unsupported(f"layer {name!r}: unexpected inbound node {str(item)[:80]}")
            kwargs = item[3] if len(item) == 4 else {}
            if "keras_tensor" in json.dumps(kwargs).lower() or "__keras_tensor__" in str(kwargs):
                raise _Unsupported(f"layer {name!r} takes tensors as keyword arguments")
    return nodes


# ------------------------------------------------------------------------------------ weights


def keras2_weight_key(class_name: str) -> str:
    """The snake-cased class name Keras 2.14 uses as a layer's key in ``model.weights.h5``
    (``Conv2D`` -> ``conv2d``, ``BatchNormalization`` -> ``batch_normalization``)."""
    step = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", class_name)
    snake = re.sub("([a-z])([A-Z])", r"\1_\2", step).lower()
    return snake if not snake.startswith("_") else "private" + snake


def _weight_groups(store: Any) -> list[str]:
    """Paths of the ``vars`` groups under the archive's layers that hold at least one array."""
    found: list[str] = []

    def visit(name: str, obj: Any) -> None:
        if name.endswith("/vars") and name.startswith(_DEPS) and len(obj) > 0:
            found.append(name)

    store.visititems(visit)
    return found


def _assign_model(model: keras.Model, config: dict[str, Any], group: Any, prefix: str) -> set[str]:
    """Set the weights of every layer of ``model`` (built from ``config``) from ``group`` (the
    model's group in the archive, at ``prefix``); returns the ``vars`` paths read."""
    used: set[str] = set()
    counts: dict[str, int] = {}
    deps = group.get(_DEPS) if group is not None else None
    for entry in config["config"].get("layers", []):
        cls = entry["class_name"]
        base = keras2_weight_key(cls)
        index = counts.get(base, -1) + 1
        counts[base] = index
        key = base if index == 0 else f"{base}_{index}"
        if cls == "InputLayer":
            continue
        name = entry["config"].get("name") or entry.get("name")
        layer = model.get_layer(keras3_name(name))
        sub = deps.get(key) if deps is not None else None
        path = f"{prefix}{_DEPS}/{key}"
        if cls in _MODEL_CLASSES:
            used |= _assign_model(layer, entry, sub, f"{path}/")
        else:
            used |= _assign_layer(layer, sub, path)
    return used


def _assign_layer(layer: keras.layers.Layer, group: Any, path: str) -> set[str]:
    arrays = group.get("vars") if group is not None else None
    stored = {} if arrays is None else {k: np.asarray(arrays[k]) for k in arrays}
    targets = list(layer.weights)
    if sorted(stored, key=int) != [str(i) for i in range(len(stored))] or len(stored) != len(targets):
        raise _Unsupported(
            f"layer {layer.name!r} ({type(layer).__name__}) has {len(targets)} weights in Keras 3 "
            f"but {len(stored)} in the archive ({path})"
        )
    for i, var in enumerate(targets):
        value = stored[str(i)]
        if tuple(value.shape) != tuple(var.shape):
            raise _Unsupported(
                f"layer {layer.name!r}: weight {i} ({var.name}) has shape {tuple(var.shape)} in "
                f"Keras 3 but {tuple(value.shape)} in the archive ({path}/vars/{i})"
            )
    if targets:
        layer.load_own_variables(stored)
        return {f"{path}/vars"}
    return set()
