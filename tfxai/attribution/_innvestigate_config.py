"""Keras 3 model config → Keras 2 (``tf_keras``) model config, for the innvestigate worker.

innvestigate 2.1.2 runs on Keras 2 only; tfxai's models are Keras 3. The worker therefore
rebuilds the model under ``tf_keras`` from a translated config and receives the weights as
plain numpy arrays, per layer (no HDF5 layout to translate). This module is the translator:
pure ``dict``/numpy code that imports neither Keras nor TensorFlow, so it can be tested on its
own and run on either side of the process boundary.

The input is what Keras 3 writes into ``.keras``/``.h5`` files and returns from
``keras.saving.serialize_keras_object(model)``: ``{"class_name": "Functional" | "Sequential",
"config": {...}}``, with nested functional/sequential sub-models. The differences handled:

* every layer: the ``dtype`` policy object becomes its name; ``module``, ``registered_name``
  and ``build_config`` are dropped; initializers, regularizers and constraints are dropped
  (the weights are transferred, and the worker only runs inference); Keras-3-only options
  (``quantization_config``, LoRA) are dropped;
* ``InputLayer``: ``batch_shape`` → ``batch_input_shape``, ``optional`` dropped;
* ``BatchNormalization``: ``synchronized`` and the (disabled) renorm options dropped;
* ``LeakyReLU``: ``negative_slope`` → ``alpha``; ``LayerNormalization``: ``rms_scaling``;
* activations given as serialized functions become their names;
* call nodes: ``{"args": [keras tensors], "kwargs": {...}}`` → ``[[layer, node, tensor,
  kwargs], ...]``; single ``output_layers``/``input_layers`` entries are wrapped in a list.

With ``rewrite=True`` (the default) three layers that innvestigate's LRP analyzers refuse are
replaced by equivalent ones it supports, so that relevance can flow through them; the worker
checks that the rebuilt model computes the same logits as the original:

* ``Rescaling(scale, offset)`` → ``Dense(C)`` with the diagonal kernel ``diag(scale)`` and bias
  ``offset`` (no bias when the offset is 0): an LRP rule then passes the relevance through
  unchanged (up to ε), and gradients are those of the rescaling;
* ``Normalization`` (last axis, not inverted) → the same diagonal ``Dense`` with
  ``1/sqrt(variance)`` and ``-mean/sqrt(variance)``;
* ``ReLU()`` with its defaults → ``Activation("relu")``.

Anything that has no Keras 2 equivalent (``Lambda``, Keras operations called on tensors inside a
functional model, activations ``tf_keras`` does not know) raises :class:`ConfigTranslationError`
naming the layer and its class.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

__all__ = ["ConfigTranslationError", "Weights", "to_keras2"]

#: ``{layer path: [(weight name, array), ...]}``; a path is ``/``-joined sub-model and layer names
Weights = dict[str, list[tuple[str, np.ndarray]]]

_MODELS = ("Functional", "Model", "Sequential")
_DROPPED_KEYS = {"module", "registered_name", "build_config", "compile_config",
                 "shared_object_id"}
_KERAS3_ONLY = {"quantization_config", "lora_rank", "lora_alpha", "lora_enabled",
                "gradient_checkpointing"}
_TF_KERAS_LACKS = {"hard_silu", "hard_swish", "sparse_plus", "squareplus", "soft_shrink",
                   "hard_shrink", "tanh_shrink", "sparsemax", "threshold", "log_sigmoid", "glu",
                   "celu", "hard_tanh", "sparse_sigmoid"}
_UNSUPPORTED = {
    "Lambda": "a Lambda layer holds Python code that cannot be moved to Keras 2",
    "TFOpLambda": "a TensorFlow op called on a Keras tensor",
}


class ConfigTranslationError(ValueError):
    """A Keras 3 model config that cannot be rebuilt under Keras 2 (``tf_keras``)."""


def to_keras2(config: dict[str, Any], weights: Weights | None = None,
              rewrite: bool = True) -> tuple[dict[str, Any], Weights]:
    """Translate a serialized Keras 3 model to a Keras 2 model config.

    Args:
        config: ``{"class_name": "Functional" | "Sequential", "config": {...}}`` as Keras 3
            serializes a model.
        weights: the model's weights per layer path (needed by the rewrites of ``rewrite``).
        rewrite: replace ``Rescaling``, ``Normalization`` and default ``ReLU`` layers by
            equivalent layers innvestigate supports (see the module docstring).

    Returns:
        ``(keras2_config, weights)``: the config for ``tf_keras.models.model_from_config`` and
        the weights per layer path, with the rewritten layers' new weights (the input dict is
        not modified).
    """
    out_weights: Weights = dict(weights or {})
    cls = config.get("class_name")
    if cls not in _MODELS:
        raise ConfigTranslationError(
            f"expected a serialized Functional or Sequential model, got class {cls!r}")
    translator = _Translator(out_weights, rewrite)
    return {"class_name": "Functional" if cls == "Model" else cls,
            "config": translator.model(cls, config["config"], "")}, out_weights


# ------------------------------------------------------------------------------------ helpers


def _dtype_name(dtype: Any) -> Any:
    if isinstance(dtype, dict):
        inner = dtype.get("config", {})
        if isinstance(inner, dict) and "name" in inner:
            return inner["name"]
        raise ConfigTranslationError(f"unknown dtype policy {dtype!r}")
    return dtype


def _activation_name(value: Any, where: str) -> Any:
    if isinstance(value, dict):
        module = str(value.get("module", ""))
        inner = value.get("config")
        if module.startswith("keras") and "activations" in module and isinstance(inner, str):
            value = inner
        elif isinstance(inner, str) and value.get("class_name") == "function":
            value = inner
        else:
            raise ConfigTranslationError(
                f"{where}: activation {value!r} is not a built-in Keras activation")
    if isinstance(value, str) and value in _TF_KERAS_LACKS:
        raise ConfigTranslationError(
            f"{where}: activation {value!r} does not exist in Keras 2 (tf_keras)")
    return value


def _is_keras_tensor(obj: Any) -> bool:
    return isinstance(obj, dict) and obj.get("class_name") == "__keras_tensor__"


def _collect_tensors(obj: Any, where: str) -> list[dict[str, Any]]:
    """The keras tensors of a call's positional arguments, in order (nested lists walked)."""
    if _is_keras_tensor(obj):
        return [obj]
    if isinstance(obj, (list, tuple)):
        found: list[dict[str, Any]] = []
        for item in obj:
            found.extend(_collect_tensors(item, where))
        return found
    raise ConfigTranslationError(
        f"{where}: a positional call argument that is not a tensor ({obj!r}) has no Keras 2 "
        "node format")


def _contains_tensor(obj: Any) -> bool:
    if _is_keras_tensor(obj):
        return True
    if isinstance(obj, dict):
        return any(_contains_tensor(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return any(_contains_tensor(v) for v in obj)
    return False


def _node(node: Any, where: str, shift: dict[str, int]) -> list[list[Any]]:
    """A Keras 3 call node → the Keras 2 node format ``[[layer, node, tensor, kwargs], ...]``.

    ``shift``: node-index offsets per inbound layer name (see :meth:`_Translator.model`)."""
    if isinstance(node, list):  # already the Keras 2 (legacy) format
        return copy.deepcopy(node)
    args = node.get("args", [])
    # Keras 3 records defaults such as ``mask=None`` (a nested model's call); Keras 2 chokes on
    # them, and they change nothing
    kwargs = {k: v for k, v in (node.get("kwargs") or {}).items() if v is not None}
    if _contains_tensor(kwargs):
        raise ConfigTranslationError(
            f"{where}: a tensor passed as a keyword argument ({sorted(kwargs)}) is not supported")
    tensors = _collect_tensors(args, where)
    if not tensors:
        raise ConfigTranslationError(f"{where}: a call without input tensors")
    out = []
    for t in tensors:
        layer, index, tensor = t["config"]["keras_history"][:3]
        out.append([layer, index + shift.get(layer, 0), tensor, copy.deepcopy(kwargs)])
    return out


def _io_layers(value: Any, shift: dict[str, int]) -> Any:
    """``input_layers``/``output_layers``: a single ``[name, node, tensor]`` becomes a list."""
    if isinstance(value, list) and len(value) == 3 and isinstance(value[0], str):
        value = [value]
    return [[name, index + shift.get(name, 0), tensor] for name, index, tensor in value]


def _channels(entry: dict[str, Any]) -> int | None:
    """The last-axis size of a layer's input, from its build config or first call node."""
    shape = (entry.get("build_config") or {}).get("input_shape")
    if shape is None:
        for node in entry.get("inbound_nodes") or []:
            if isinstance(node, dict):
                tensors = [a for a in node.get("args", []) if _is_keras_tensor(a)]
                if tensors:
                    shape = tensors[0]["config"].get("shape")
                    break
    if isinstance(shape, (list, tuple)) and shape and isinstance(shape[-1], int):
        return int(shape[-1])
    return None


def _per_channel(value: Any, channels: int) -> np.ndarray | None:
    """``value`` (scalar or broadcastable to the last axis) as a (C,) float array, or None."""
    arr = np.asarray(value, np.float64)
    if arr.size == 1:
        return np.full(channels, float(arr.ravel()[0]))
    if arr.size == channels and arr.shape[-1] == channels:
        return arr.reshape(channels)
    return None


# --------------------------------------------------------------------------------- translator


class _Translator:
    def __init__(self, weights: Weights, rewrite: bool) -> None:
        self.weights = weights
        self.rewrite = rewrite

    # models ---------------------------------------------------------------------------------
    def model(self, cls: str, cfg: dict[str, Any], prefix: str) -> dict[str, Any]:
        if cls == "Sequential":
            out: dict[str, Any] = {"name": cfg.get("name"),
                                   "layers": [self.entry(e, prefix, sequential=True)
                                              for e in cfg.get("layers", [])]}
            if cfg.get("build_input_shape") is not None:
                out["build_input_shape"] = cfg["build_input_shape"]
            return out
        # A nested Sequential model that starts with an InputLayer has a first call node of its
        # own in Keras 2 (a Functional subclass there), which configs do not list: Keras 2
        # numbers its calls from 1, Keras 3 (where Sequential is no Functional) from 0.
        shift = {}
        for e in cfg.get("layers", []):
            inner = (e.get("config") or {}).get("layers") or [{}]
            if e.get("class_name") == "Sequential" and inner[0].get("class_name") == "InputLayer":
                shift[e.get("name") or e["config"].get("name")] = 1
        return {
            "name": cfg.get("name"),
            "trainable": cfg.get("trainable", True),
            "layers": [self.entry(e, prefix, shift=shift) for e in cfg.get("layers", [])],
            "input_layers": _io_layers(cfg.get("input_layers"), shift),
            "output_layers": _io_layers(cfg.get("output_layers"), shift),
        }

    def entry(self, entry: dict[str, Any], prefix: str, sequential: bool = False,
              shift: dict[str, int] | None = None) -> dict[str, Any]:
        cls = entry.get("class_name")
        cfg = entry.get("config") or {}
        name = entry.get("name") or cfg.get("name")
        where = f"layer {prefix}{name!s} ({cls})"
        if cls in _MODELS:
            out = {"class_name": "Functional" if cls == "Model" else cls,
                   "config": self.model(cls, cfg, f"{prefix}{name}/")}
        else:
            if cls in _UNSUPPORTED:
                raise ConfigTranslationError(f"{where}: {_UNSUPPORTED[cls]}; rebuild the model "
                                             "with Keras layers to run innvestigate on it")
            if cls == "__keras_tensor__" or str(entry.get("module", "")).startswith("keras.src.ops"):
                raise ConfigTranslationError(
                    f"{where}: a Keras operation called on a tensor in a functional model has "
                    "no Keras 2 layer equivalent")
            cls, layer_cfg = self.layer(cls, dict(cfg), entry, f"{prefix}{name}", where)
            out = {"class_name": cls, "config": layer_cfg}
        if not sequential:
            if name is not None:
                out["name"] = name
            out["inbound_nodes"] = [_node(n, where, shift or {})
                                    for n in entry.get("inbound_nodes") or []]
        return out

    # layers ---------------------------------------------------------------------------------
    def layer(self, cls: str, cfg: dict[str, Any], entry: dict[str, Any], path: str,
              where: str) -> tuple[str, dict[str, Any]]:
        for key in list(cfg):
            if key in _DROPPED_KEYS or key in _KERAS3_ONLY or key.endswith(
                    ("_initializer", "_regularizer", "_constraint")):
                cfg.pop(key)
        if "dtype" in cfg:
            cfg["dtype"] = _dtype_name(cfg["dtype"])
        for key in ("activation", "recurrent_activation"):
            if key in cfg:
                cfg[key] = _activation_name(cfg[key], where)

        if cls == "InputLayer":
            if "batch_shape" in cfg:
                cfg["batch_input_shape"] = cfg.pop("batch_shape")
            cfg.pop("optional", None)
            cfg.pop("input_tensor", None)
        elif cls == "BatchNormalization":
            if cfg.pop("renorm", False):
                raise ConfigTranslationError(f"{where}: batch renormalisation is not supported")
            for key in ("renorm_clipping", "renorm_momentum", "synchronized"):
                cfg.pop(key, None)
        elif cls == "LeakyReLU":
            if "negative_slope" in cfg:
                cfg["alpha"] = cfg.pop("negative_slope")
        elif cls == "LayerNormalization":
            if cfg.pop("rms_scaling", False):
                raise ConfigTranslationError(f"{where}: RMS scaling has no Keras 2 equivalent")
        if self.rewrite:
            rewritten = self.rewritten(cls, cfg, entry, path)
            if rewritten is not None:
                return rewritten
        return cls, cfg

    def rewritten(self, cls: str, cfg: dict[str, Any], entry: dict[str, Any], path: str
                  ) -> tuple[str, dict[str, Any]] | None:
        """An equivalent layer innvestigate supports, or None to keep the layer."""
        if cls == "ReLU":
            defaults = (cfg.get("max_value") is None and not cfg.get("negative_slope")
                        and not cfg.get("threshold"))
            if defaults:
                return "Activation", {"name": cfg.get("name"), "trainable": cfg.get("trainable", True),
                                      "dtype": cfg.get("dtype"), "activation": "relu"}
            return None
        channels = _channels(entry)
        if channels is None:
            return None
        if cls == "Rescaling":
            scale = _per_channel(cfg.get("scale", 1.0), channels)
            offset = _per_channel(cfg.get("offset", 0.0), channels)
        elif cls == "Normalization":
            axis = cfg.get("axis", -1)
            if cfg.get("invert") or axis not in (-1, [-1], (-1,)):
                return None
            mean, var = cfg.get("mean"), cfg.get("variance")
            if mean is None or var is None:
                stored = dict(self.weights.get(path, []))
                mean, var = stored.get("mean"), stored.get("variance")
            if mean is None or var is None:
                return None
            mean_c, var_c = _per_channel(mean, channels), _per_channel(var, channels)
            if mean_c is None or var_c is None:
                return None
            std = np.maximum(np.sqrt(var_c), 1e-7)  # as Keras: max(sqrt(variance), epsilon)
            scale, offset = 1.0 / std, -mean_c / std
        else:
            return None
        if scale is None or offset is None:
            return None
        use_bias = bool(np.any(offset != 0))
        arrays = [("kernel", np.diag(scale).astype(np.float32))]
        if use_bias:
            arrays.append(("bias", offset.astype(np.float32)))
        self.weights[path] = arrays
        return "Dense", {"name": cfg.get("name"), "trainable": cfg.get("trainable", True),
                         "dtype": cfg.get("dtype"), "units": channels, "activation": "linear",
                         "use_bias": use_bias}
