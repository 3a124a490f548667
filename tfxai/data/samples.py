"""The sample photographs of ``tfxai demo``, exported at run time from scikit-image and scikit-learn.

No image file is committed to tfxai: the six photographs ship inside two packages tfxai already depends
on (scikit-learn through lime), and :func:`export_sample_images` writes them as PNG files whose stems
match the Pascal-VOC boxes in the repository's ``annotations/`` folder:

=============  ==========================================  ==========================================
stem           source                                      annotated objects
=============  ==========================================  ==========================================
``chelsea``    ``skimage.data.chelsea()``                  tabby cat (n02123045)
``coffee``     ``skimage.data.coffee()``                   espresso cup (n07920052)
``rocket``     ``skimage.data.rocket()``                   launch vehicle as missile (n03773504)
``astronaut``  ``skimage.data.astronaut()``                "astronaut" (no ImageNet class), space
                                                           shuttle model (n04266014)
``china``      ``sklearn.datasets.load_sample_image``      pagoda as palace (n03877845)
``flower``     ``sklearn.datasets.load_sample_image``      two dahlias as daisy (n11939491)
=============  ==========================================  ==========================================

:func:`sample_images_dir` gives a folder holding the six PNG files with their XML files next to them
(in the user's cache, written once); ``tfxai attribute`` and ``tfxai evaluate`` use it when no
``--images`` is given. :func:`annotations_dir` finds the XML files in a source checkout or where pip
installed them (``<prefix>/share/tfxai/annotations``).
"""

from __future__ import annotations

import os
import sys
import sysconfig
import tempfile
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["SAMPLE_NAMES", "annotations_dir", "export_sample_images", "sample_image",
           "sample_images_dir"]

#: environment variable naming the folder of :func:`sample_images_dir` (default: the user cache)
SAMPLES_ENV = "TFXAI_SAMPLES_DIR"

#: Stems of the sample images, in demo order; each has ``annotations/<stem>.xml``.
SAMPLE_NAMES: tuple[str, ...] = ("chelsea", "coffee", "rocket", "astronaut", "china", "flower")


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import skimage.data

        return getattr(skimage.data, name)()

    return load


def _sklearn(filename: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        try:
            from sklearn.datasets import load_sample_image
        except ImportError as exc:  # pragma: no cover - scikit-learn comes with lime
            raise ImportError(
                f"the sample image {filename!r} needs scikit-learn: pip install scikit-learn"
            ) from exc
        return load_sample_image(filename)

    return load


_LOADERS: dict[str, Callable[[], np.ndarray]] = {
    "chelsea": _skimage("chelsea"),
    "coffee": _skimage("coffee"),
    "rocket": _skimage("rocket"),
    "astronaut": _skimage("astronaut"),
    "china": _sklearn("china.jpg"),
    "flower": _sklearn("flower.jpg"),
}


def sample_image(name: str) -> np.ndarray:
    """One sample photograph as an RGB ``uint8`` array (H, W, 3), at its original size.

    Raises:
        ValueError: ``name`` is not one of :data:`SAMPLE_NAMES`.
    """
    if name not in _LOADERS:
        raise ValueError(f"unknown sample image {name!r}; choose from {', '.join(SAMPLE_NAMES)}")
    img = np.asarray(_LOADERS[name](), dtype=np.uint8)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"sample image {name!r} is not RGB: shape {img.shape}")
    return img


def export_sample_images(
    dest_dir: str | os.PathLike, names: Iterable[str] | None = None
) -> list[Path]:
    """Write the sample photographs as ``<dest_dir>/<stem>.png`` and return their paths.

    The stems match ``annotations/<stem>.xml``, whose ``<size>`` is the original width and height, so
    the boxes apply unchanged. Existing files are overwritten; ``dest_dir`` is created if needed.

    Args:
        dest_dir: output folder.
        names: a subset of :data:`SAMPLE_NAMES` (default: all, in that order).
    """
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in SAMPLE_NAMES if names is None else tuple(names):
        path = dest / f"{name}.png"
        Image.fromarray(sample_image(name), "RGB").save(path)
        paths.append(path)
    return paths


def _annotation_candidates() -> list[Path]:
    """Where the sample images' XML files may be: the source checkout, then the install's
    ``share/tfxai/annotations`` (the ``data_files`` of setup.cfg) under every install scheme."""
    out = [Path(__file__).resolve().parents[2] / "annotations"]
    try:
        from importlib import metadata

        files = metadata.distribution("tfxai").files or []
        for f in files:
            if f.name == f"{SAMPLE_NAMES[0]}.xml":
                located = Path(str(metadata.distribution("tfxai").locate_file(f)))
                if located.is_absolute():
                    out.append(located.resolve().parent)
    except Exception:  # noqa: BLE001 - not installed, or metadata without a file list
        pass
    prefixes = [sysconfig.get_paths()["data"], sys.prefix, sys.base_prefix]
    for scheme in ("posix_user", "nt_user", "osx_framework_user"):
        try:
            prefixes.append(sysconfig.get_paths(scheme)["data"])
        except KeyError:
            continue
    out += [Path(p) / "share" / "tfxai" / "annotations" for p in prefixes]
    seen: list[Path] = []
    for p in out:
        if p not in seen:
            seen.append(p)
    return seen


def annotations_dir() -> Path:
    """The folder of the sample images' Pascal-VOC files (``annotations/`` of a source checkout,
    or ``<prefix>/share/tfxai/annotations`` of an installed tfxai).

    Raises:
        FileNotFoundError: not found; the message lists where it looked.
    """
    candidates = _annotation_candidates()
    for path in candidates:
        if all((path / f"{name}.xml").is_file() for name in SAMPLE_NAMES):
            return path
    raise FileNotFoundError(
        "the sample images' annotations (annotations/*.xml) were not found (looked in "
        + ", ".join(str(c) for c in candidates) + "); reinstall tfxai from its source folder"
    )


def _default_dir() -> Path:
    env = os.environ.get(SAMPLES_ENV)
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "tfxai" / "sample-images"


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _fill(folder: Path, names: tuple[str, ...], ann: Path) -> None:
    import io

    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        xml = (ann / f"{name}.xml").read_bytes()
        target = folder / f"{name}.xml"
        if not target.is_file() or target.read_bytes() != xml:
            _write_atomic(target, xml)
        png = folder / f"{name}.png"
        if not png.is_file():
            buf = io.BytesIO()
            Image.fromarray(sample_image(name), "RGB").save(buf, format="PNG")
            _write_atomic(png, buf.getvalue())


def sample_images_dir(dest: str | os.PathLike | None = None) -> Path:
    """A folder holding the sample photographs as ``<stem>.png`` with ``<stem>.xml`` next to each.

    The default folder is ``$TFXAI_SAMPLES_DIR``, else ``~/.cache/tfxai/sample-images``
    (``$XDG_CACHE_HOME`` respected), else — when that cannot be written — one in the system's
    temporary folder. Missing files are written (atomically, so concurrent runs are safe); XML files
    that differ from the bundled ones are replaced. ``tfxai attribute``/``evaluate`` use this folder
    when no ``--images`` is given.
    """
    names = SAMPLE_NAMES
    ann = annotations_dir()
    if dest is not None:
        _fill(Path(dest), names, ann)
        return Path(dest)
    folder = _default_dir()
    try:
        _fill(folder, names, ann)
        return folder
    except OSError:
        uid = os.getuid() if hasattr(os, "getuid") else "user"
        fallback = Path(tempfile.gettempdir()) / f"tfxai-sample-images-{uid}"
        _fill(fallback, names, ann)
        return fallback
