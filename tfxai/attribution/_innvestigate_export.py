"""A Keras 3 model exported as the innvestigate worker's *bundle*.

The worker rebuilds the model under Keras 2 (``tf_keras``) for innvestigate 2.1.2 [Alber et al.
2019, "iNNvestigate Neural Networks!", JMLR 20(93)]. :func:`keras3_config` serializes the model
as Keras 3 does, tfxai's graph wrappers (:mod:`tfxai.graph`) written as the layers they wrap;
:mod:`tfxai.attribution._innvestigate_config` translates that config to Keras 2;
:func:`export_bundle` writes it with the weights (numpy arrays per layer path) and a probe batch
whose logits the rebuilt model must reproduce.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from tfxai import graph
from tfxai.attribution._innvestigate_config import ConfigTranslationError, Weights, to_keras2
from tfxai.backend import keras


def _is_wrapper(op: Any, name: str) -> bool:
    cls = getattr(graph, name, None)
    return cls is not None and isinstance(op, cls)


def _unwrap(op: Any) -> tuple[Any, Any]:
    """``(layer whose config and weights are used, activation override or None)``."""
    if _is_wrapper(op, "FusedActivation"):
        return op.inner, op.new_activation
    if _is_wrapper(op, "Alias"):
        return _unwrap(op.op)
    if _is_wrapper(op, "InferenceBatchNorm"):  # Keras 2 runs the layer as the same fused kernel
        return op.inner, None
    return op, None


def _layer_entry(op: Any) -> dict[str, Any]:
    if graph.is_graph_model(op):
        entry = keras3_config(op)
    else:
        layer, activation = _unwrap(op)
        if not isinstance(layer, keras.layers.Layer):
            raise ConfigTranslationError(
                f"layer {op.name} ({type(layer).__name__}): a Keras operation called on a tensor "
                "has no Keras 2 layer equivalent; use a Keras layer instead")
        try:
            entry = keras.saving.serialize_keras_object(layer)
        except Exception as exc:  # noqa: BLE001 - re-raised with the layer's name
            raise ConfigTranslationError(
                f"layer {op.name} ({type(layer).__name__}) cannot be serialized: "
                f"{type(exc).__name__}: {str(exc).strip()[:300]}") from None
        entry["config"] = dict(entry["config"])
        if activation is not None:
            try:
                entry["config"]["activation"] = keras.activations.serialize(activation)
            except Exception:  # noqa: BLE001
                raise ConfigTranslationError(
                    f"layer {op.name}: its activation {activation!r} is not a Keras "
                    "activation") from None
        entry["config"]["name"] = op.name
    return entry


def keras3_config(model: Any) -> dict[str, Any]:
    """``model`` serialized as Keras 3 does (``{"class_name", "config"}``), also when it holds
    tfxai's graph wrappers (:class:`tfxai.graph.FusedActivation`, :class:`tfxai.graph.Alias`):
    they are written as the layer they wrap, under their own name."""
    if not isinstance(model, graph.Functional):
        return keras.saving.serialize_keras_object(model)
    from keras.src.models.functional import serialize_node
    from keras.src.ops.function import make_node_key

    own = model._nodes
    reindex: dict[str, int] = {}
    for op in model.operations:
        kept = 1 if isinstance(op, graph.Functional) else 0
        for i in range(len(op._inbound_nodes)):
            key = make_node_key(op, i)
            if key in own:
                reindex[key] = kept
                kept += 1
    layers = []
    for op in model.operations:
        entry = _layer_entry(op)
        entry["name"] = op.name
        nodes = []
        for i, node in enumerate(op._inbound_nodes):
            if make_node_key(op, i) in own:
                data = serialize_node(node, own_nodes=own)
                if data is not None:
                    nodes.append(data)
        entry["inbound_nodes"] = nodes
        layers.append(entry)

    def tensor(t: Any) -> list[Any]:
        op, node_index, tensor_index = t._keras_history
        return [op.name, reindex[make_node_key(op, node_index)], tensor_index]

    return {"class_name": "Functional", "config": {
        "name": model.name, "trainable": model.trainable, "layers": layers,
        "input_layers": [tensor(t) for t in model.inputs],
        "output_layers": [tensor(t) for t in model.outputs],
    }}


def _weights(model: Any, prefix: str = "") -> Weights:
    out: Weights = {}
    for op in model.layers:
        path = f"{prefix}{op.name}"
        if graph.is_graph_model(op):
            out.update(_weights(op, f"{path}/"))
            continue
        layer, _ = _unwrap(op)
        arrays = [(v.name.split("/")[-1].split(":")[0], np.asarray(v.numpy()))
                  for v in getattr(layer, "weights", [])]
        if arrays:
            out[path] = arrays
    return out


def export_bundle(model: Any, directory: str | os.PathLike, probe: Any = None,
                  rewrite: bool = True) -> Path:
    """Write the worker's bundle of a Keras 3 model into ``directory``.

    Files: ``model.json`` (the Keras 2 config), ``weights.npz`` and ``manifest.json`` (arrays
    per layer path and weight name). ``probe`` (an input batch; default: two seeded standard
    normal inputs when the input shape is known) is stored with the Keras 3 model's outputs: the
    worker checks that the rebuilt model reproduces them (relative 1e-3 of the largest output).
    """
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ConfigTranslationError(
            f"model {model.name!r}: innvestigate needs one input and one output, it has "
            f"{len(model.inputs)} and {len(model.outputs)}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config, weights = to_keras2(keras3_config(model), _weights(model), rewrite=rewrite)
    arrays: dict[str, np.ndarray] = {}
    layers = []
    for path, named in weights.items():
        items = []
        for name, arr in named:
            key = f"w{len(arrays)}"
            arrays[key] = np.asarray(arr)
            items.append({"name": name, "key": key})
        layers.append({"path": path, "weights": items})
    manifest: dict[str, Any] = {"layers": layers, "probe": None}
    shape = tuple(model.inputs[0].shape[1:])
    if probe is None and all(isinstance(d, int) for d in shape):
        probe = np.random.default_rng(0).standard_normal((2, *shape)).astype(np.float32)
    if probe is not None:
        x = np.asarray(probe, np.float32)
        arrays["probe_x"] = x
        arrays["probe_y"] = np.asarray(model(x, training=False), np.float64)
        manifest["probe"] = {"x": "probe_x", "y": "probe_y", "rtol": 1e-3}
    (directory / "model.json").write_text(json.dumps(config), encoding="utf-8")
    (directory / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    np.savez(directory / "weights.npz", **arrays)
    return directory
