"""The synthetic shapes dataset: determinism per seed, layout, labels and VOC boxes."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from tfxai.data.annotations import parse_voc
from tfxai.data.synthetic import SHAPES, make_synthetic_dataset, render_image


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_bytes_and_other_seed_differs(tmp_path):
    a = make_synthetic_dataset(tmp_path / "a", n_per_class=6, size=32, seed=3)
    b = make_synthetic_dataset(tmp_path / "b", n_per_class=6, size=32, seed=3)
    c = make_synthetic_dataset(tmp_path / "c", n_per_class=6, size=32, seed=4)
    fa, fb, fc = _files(a.root), _files(b.root), _files(c.root)
    assert fa.keys() == fb.keys() == fc.keys()
    assert fa == fb
    pngs = [k for k in fa if k.endswith(".png")]
    assert len(pngs) == 18
    assert sum(fa[k] != fc[k] for k in pngs) == len(pngs)


def test_image_does_not_depend_on_the_other_classes(tmp_path):
    a = make_synthetic_dataset(tmp_path / "a", n_per_class=4, classes=("circle", "square"), size=32)
    b = make_synthetic_dataset(tmp_path / "b", n_per_class=4, classes=("square", "ring", "cross"), size=32)
    for name in ("train/square/square_0002.png", "test/square/square_0000.png"):
        assert (a.root / name).read_bytes() == (b.root / name).read_bytes()


def test_layout_labels_and_split(tmp_path):
    ds = make_synthetic_dataset(tmp_path, n_per_class=10, classes=("triangle", "circle", "square"), size=32)
    assert ds.classes == ["circle", "square", "triangle"]
    assert (ds.n_train, ds.n_test) == (24, 6)
    for name in ds.classes:
        assert len(list((tmp_path / "train" / name).glob("*.png"))) == 8
        assert len(list((tmp_path / "test" / name).glob("*.png"))) == 2
    with (tmp_path / "labels.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 30
    for row in rows:
        assert (tmp_path / row["image"]).is_file()
        assert ds.classes[int(row["label"])] == row["class"] == row["image"].split("/")[1]
        assert row["split"] == row["image"].split("/")[0]
        assert (tmp_path / "annotations" / (row["image"].split("/")[-1][:-4] + ".xml")).is_file()


def test_unsplit_layout(tmp_path):
    ds = make_synthetic_dataset(tmp_path, n_per_class=3, size=24, split=False)
    assert ds.n_test == 0 and ds.n_train == 9
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == [
        "annotations", "circle", "square", "triangle"]
    assert len(list((tmp_path / "circle").glob("*.png"))) == 3


def test_voc_box_is_the_tight_box_of_the_shape(tmp_path):
    make_synthetic_dataset(tmp_path, n_per_class=5, size=48, seed=1)
    for xml in sorted((tmp_path / "annotations").glob("*.xml")):
        ann = parse_voc(xml)
        assert ann.names == [xml.stem.split("_")[0]]
        assert (ann.width, ann.height) == (48, 48)
        x0, y0, x1, y1 = ann.boxes[0].astype(int)
        assert 0 <= x0 < x1 <= 48 and 0 <= y0 < y1 <= 48


def test_png_and_box_match_render_image(tmp_path):
    """Each file is render_image on the stream [seed, crc32(class), i]; the XML box is its box."""
    import zlib

    key = zlib.crc32(b"ring")
    make_synthetic_dataset(tmp_path / "r", n_per_class=3, classes=("ring", "cross"), size=32, seed=5)
    expected, box = render_image("ring", 32, np.random.default_rng([5, key, 2]))
    got = np.asarray(Image.open(tmp_path / "r" / "train" / "ring" / "ring_0002.png"))
    np.testing.assert_array_equal(got, expected)
    ann = parse_voc(tmp_path / "r" / "annotations" / "ring_0002.xml")
    np.testing.assert_array_equal(ann.boxes[0], np.asarray(box, np.float32))


def test_shape_colour_stands_out_inside_the_box(tmp_path):
    """The pixels that differ most from the background median lie inside the shape's box."""
    for shape in SHAPES:
        img, (x0, y0, x1, y1) = render_image(shape, 64, np.random.default_rng([0, len(shape)]))
        bg = np.median(img[[0, -1]].reshape(-1, 3), axis=0)
        dist = np.linalg.norm(img.astype(float) - bg, axis=-1)
        far = dist > 80
        inside = np.zeros_like(far)
        inside[y0:y1, x0:x1] = True
        assert far.sum() > 20
        assert far[inside].sum() / far.sum() > 0.95


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="unknown shape"):
        make_synthetic_dataset(tmp_path, classes=("circle", "hexagon"))
    with pytest.raises(ValueError, match="n_per_class"):
        make_synthetic_dataset(tmp_path, n_per_class=0)
    with pytest.raises(ValueError, match="size"):
        make_synthetic_dataset(tmp_path, size=8)
    with pytest.raises(ValueError, match="classes"):
        make_synthetic_dataset(tmp_path, classes=("circle",))
