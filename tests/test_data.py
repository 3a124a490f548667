"""Tests of tfxai.data: image loading and colour modes, bad files, VOC boxes, resizing with box
transforms, masks, dataset discovery, labels, sharding, batch loading and the ImageNet class index.

Every image here is written with PIL into ``tmp_path``; one integration test reads the real
ImageNet validation images in ``../shared/data/imagenet-val-15`` and skips when they are absent.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tfxai.data import (
    AnnotationError,
    DatasetError,
    ImageLoadError,
    Sample,
    boxes_to_mask,
    boxes_to_masks,
    class_index,
    class_name,
    discover,
    iter_batches,
    load_batch,
    load_image,
    parse_label,
    parse_voc,
    resize_image,
    shard,
    synset_to_index,
)
from tfxai.data.imagenet import index_to_synset

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
VAL15 = SHARED / "imagenet-val-15"

TENCH, SEA_SNAKE, TOILET_TISSUE = "n01440764", "n01751748", "n15075141"


# --------------------------------------------------------------------------------------- helpers


def write_voc(
    path: Path,
    objects: list[tuple[str, tuple[float, float, float, float]]],
    size: tuple[int, int] | None = (100, 80),
) -> Path:
    """A Pascal-VOC XML file; ``objects`` = [(name, (xmin, ymin, xmax, ymax) in VOC 1-based)]."""
    parts = ["<annotation>", f"<filename>{path.stem}</filename>"]
    if size is not None:
        parts.append(f"<size><width>{size[0]}</width><height>{size[1]}</height>"
                     "<depth>3</depth></size>")
    for name, (x0, y0, x1, y1) in objects:
        parts.append(
            f"<object><name>{name}</name><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin>"
            f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
        )
    parts.append("</annotation>")
    path.write_text("\n".join(parts))
    return path


def write_rgb(path: Path, size: tuple[int, int] = (40, 30), value: int = 128) -> Path:
    """A solid RGB image of ``size = (W, H)``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (value, value // 2, 255 - value)).save(path)
    return path


def write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@contextmanager
def raises_naming(
    error: type[Exception], named: str, match: str | None = None
) -> Iterator[pytest.ExceptionInfo]:
    """Expect the block to raise ``error`` (message matching ``match``) whose message contains
    ``named`` (the path or name of the bad input); yields pytest's ``ExceptionInfo``."""
    with pytest.raises(error, match=match) as info:
        yield info
    assert named in str(info.value)


def write_truncated_jpeg(path: Path) -> Path:
    rng = np.random.default_rng(0)
    full = path.with_name("full_" + path.name)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(full, quality=95)
    data = full.read_bytes()
    full.unlink()
    path.write_bytes(data[: len(data) // 2])
    return path


# --------------------------------------------------------------------------------------- colour modes


def test_greyscale_is_replicated_to_rgb(tmp_path):
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    Image.fromarray(grey, "L").save(tmp_path / "g.png")
    out = load_image(tmp_path / "g.png")
    assert out.dtype == np.uint8 and out.shape == (3, 4, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], grey)


def test_rgba_is_composited_on_white(tmp_path):
    rgba = np.zeros((2, 3, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 255  # opaque red-ish
    rgba[0, 0] = [10, 20, 30, 0]  # fully transparent → white
    rgba[0, 1] = [0, 0, 0, 128]  # half-transparent black over white → ~127
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    out = load_image(tmp_path / "a.png")
    assert out.dtype == np.uint8 and out.shape == (2, 3, 3)
    np.testing.assert_array_equal(out[1, 2], [200, 0, 0])
    np.testing.assert_array_equal(out[0, 0], [255, 255, 255])
    np.testing.assert_allclose(out[0, 1], [127, 127, 127], atol=1)


def test_cmyk_jpeg_to_rgb(tmp_path):
    cmyk = np.zeros((16, 16, 4), np.uint8)
    cmyk[:8, :, 1] = cmyk[:8, :, 2] = 255  # magenta + yellow = red; bottom half: no ink = white
    Image.fromarray(cmyk, "CMYK").save(tmp_path / "c.jpg", quality=100)
    assert Image.open(tmp_path / "c.jpg").mode == "CMYK"
    out = load_image(tmp_path / "c.jpg")
    assert out.dtype == np.uint8 and out.shape == (16, 16, 3)
    np.testing.assert_allclose(out[2, 2], [255, 0, 0], atol=3)
    np.testing.assert_allclose(out[13, 13], [255, 255, 255], atol=3)


def test_palette_png_to_rgb(tmp_path):
    img = Image.new("P", (4, 3), 0)
    img.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (768 - 9))
    img.putpixel((1, 2), 2)
    img.putpixel((3, 0), 1)
    img.save(tmp_path / "p.png")
    assert Image.open(tmp_path / "p.png").mode == "P"
    out = load_image(tmp_path / "p.png")
    assert out.dtype == np.uint8 and out.shape == (3, 4, 3)
    np.testing.assert_array_equal(out[0, 0], [255, 0, 0])
    np.testing.assert_array_equal(out[2, 1], [0, 0, 255])
    np.testing.assert_array_equal(out[0, 3], [0, 255, 0])


def test_16bit_greyscale_png_to_rgb_uint8(tmp_path):
    values = (np.arange(32, dtype=np.uint32).reshape(4, 8) * 2000).astype(np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    out = load_image(tmp_path / "g16.png")
    assert out.dtype == np.uint8 and out.shape == (4, 8, 3)
    np.testing.assert_allclose(out[..., 0], values / 65535 * 255, atol=1)
    np.testing.assert_array_equal(out[..., 0], out[..., 2])


def test_dark_16bit_png_is_scaled_as_16bit(tmp_path):
    """A 16-bit image whose values all happen to be ≤ 255 is still a 16-bit image: 200/65535 of
    full scale is black, not 200/255."""
    Image.fromarray(np.full((4, 4), 200, np.uint16)).save(tmp_path / "dark16.png")
    out = load_image(tmp_path / "dark16.png")
    np.testing.assert_allclose(out[0, 0], [1, 1, 1], atol=1)


def test_16bit_rgb_png_to_rgb_uint8(tmp_path):
    import cv2

    rgb16 = np.zeros((4, 4, 3), np.uint16)
    rgb16[..., 0], rgb16[..., 2] = 65535, 30000
    assert cv2.imwrite(str(tmp_path / "rgb16.png"), rgb16[..., ::-1])  # cv2 writes BGR
    out = load_image(tmp_path / "rgb16.png")
    assert out.dtype == np.uint8 and out.shape == (4, 4, 3)
    np.testing.assert_allclose(out[0, 0], [255, 0, 30000 / 65535 * 255], atol=1)


# --------------------------------------------------------------------------------------- bad files


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda d: write_truncated_jpeg(d / "trunc.jpg"), "truncated"),
        (lambda d: write_bytes(d / "zero.jpg", b""), "empty"),
        (lambda d: write_bytes(d / "text.jpg", b"not an image\n"), "not a"),
        (lambda d: d / "missing.png", "does not exist"),
    ],
    ids=["truncated_jpeg", "zero_byte", "text_as_jpg", "missing"],
)
def test_bad_image_files_raise_naming_the_file(tmp_path, make, reason):
    path = make(tmp_path)
    with raises_naming(ImageLoadError, str(path)) as info:
        load_image(path)
    assert reason in str(info.value)
    assert isinstance(info.value, ValueError)


def test_directory_without_images_is_a_dataset_error(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images here")
    with raises_naming(DatasetError, str(empty), match="no images"):
        discover(empty)


def test_missing_source_and_annotation_folder(tmp_path):
    with raises_naming(DatasetError, "nowhere", match="does not exist"):
        discover(tmp_path / "nowhere")
    write_rgb(tmp_path / "imgs" / "a.jpg")
    with raises_naming(DatasetError, "no_ann", match="annotations"):
        discover(tmp_path / "imgs", annotations=tmp_path / "no_ann")


# --------------------------------------------------------------------------------------- VOC XML


def test_voc_several_objects_and_coordinate_conversion(tmp_path):
    xml = write_voc(
        tmp_path / "a.xml",
        [(TENCH, (1, 1, 10, 20)), (SEA_SNAKE, (51, 11, 100, 80)), (TOILET_TISSUE, (5, 6, 5, 6))],
        size=(100, 80),
    )
    ann = parse_voc(xml)
    assert ann.width == 100 and ann.height == 80
    # VOC 1-based inclusive → 0-based half-open: xmin-1, ymin-1, xmax, ymax
    np.testing.assert_array_equal(
        ann.boxes, [[0, 0, 10, 20], [50, 10, 100, 80], [4, 5, 5, 6]]
    )
    assert ann.boxes.dtype == np.float32
    assert ann.names == [TENCH, SEA_SNAKE, TOILET_TISSUE]
    np.testing.assert_array_equal(ann.labels, [0, 65, 999])
    assert ann.label == 0
    assert ann.notes == []
    # the single-pixel VOC box (5,6)-(5,6) covers exactly one pixel
    assert boxes_to_mask(ann.boxes[2:], (80, 100)).sum() == 1
    assert boxes_to_mask(ann.boxes[2:], (80, 100))[5, 4]


def test_voc_imagenet_zero_coordinates_are_clipped(tmp_path):
    ann = parse_voc(write_voc(tmp_path / "z.xml", [(TENCH, (0, 0, 100, 80))], size=(100, 80)))
    np.testing.assert_array_equal(ann.boxes, [[0, 0, 100, 80]])
    np.testing.assert_array_equal(ann.labels, [0])


def test_voc_without_size_still_clips_negative_coordinates(tmp_path):
    ann = parse_voc(write_voc(tmp_path / "n.xml", [(TENCH, (0, 3, 7, 9))], size=None))
    assert ann.width is None and ann.height is None
    np.testing.assert_array_equal(ann.boxes, [[0, 2, 7, 9]])


def test_voc_without_objects(tmp_path):
    ann = parse_voc(write_voc(tmp_path / "e.xml", []))
    assert ann.boxes.shape == (0, 4)
    assert ann.labels.shape == (0,)
    assert ann.label is None
    assert any("no object" in n for n in ann.notes)


def test_voc_box_outside_the_image_is_clipped_with_a_note(tmp_path):
    ann = parse_voc(write_voc(tmp_path / "o.xml", [(TENCH, (61, 41, 150, 120))], size=(100, 80)))
    np.testing.assert_array_equal(ann.boxes, [[60, 40, 100, 80]])
    assert any("clipped" in n for n in ann.notes)


def test_voc_imagenet_zero_with_far_edge_outside_still_notes_the_clip(tmp_path):
    """A 0 coordinate is ImageNet's habit, but xmax=150 on a 100-wide image is a real overflow."""
    ann = parse_voc(write_voc(tmp_path / "o.xml", [(TENCH, (0, 1, 150, 80))], size=(100, 80)))
    np.testing.assert_array_equal(ann.boxes, [[0, 0, 100, 80]])
    assert any("clipped" in n for n in ann.notes), ann.notes


def test_voc_zero_area_and_fully_outside_boxes_are_dropped_with_a_note(tmp_path):
    ann = parse_voc(
        write_voc(
            tmp_path / "z.xml",
            [(TENCH, (10, 10, 9, 30)),  # xmax < xmin → zero width in half-open coordinates
             (TENCH, (5, 20, 30, 19)),  # zero height
             (TENCH, (120, 10, 140, 30)),  # entirely right of a 100-wide image
             (SEA_SNAKE, (1, 1, 5, 5))],
            size=(100, 80),
        )
    )
    np.testing.assert_array_equal(ann.boxes, [[0, 0, 5, 5]])
    np.testing.assert_array_equal(ann.labels, [65])
    assert sum("zero-area" in n for n in ann.notes) == 3


def test_voc_unknown_synset_keeps_box_with_label_minus_one(tmp_path):
    ann = parse_voc(
        write_voc(tmp_path / "u.xml", [("n99999999", (1, 1, 5, 5)), ("dog", (2, 2, 6, 6)),
                                       (SEA_SNAKE, (3, 3, 7, 7))])
    )
    np.testing.assert_array_equal(ann.labels, [-1, -1, 65])
    assert len(ann.boxes) == 3
    assert ann.label == 65  # the first object with a known class
    assert any("n99999999" in n for n in ann.notes)
    assert any("dog" in n for n in ann.notes)


@pytest.mark.parametrize(
    "text, match",
    [
        ("<annotation><object><name>x</name>", "malformed XML"),
        ("", "malformed XML"),
        ("<annotation><object><name>n01440764</name><bndbox><xmin>a</xmin><ymin>1</ymin>"
         "<xmax>2</xmax><ymax>2</ymax></bndbox></object></annotation>", "not a number"),
        ("<annotation><object><name>n01440764</name><bndbox><xmin>1</xmin><ymin>1</ymin>"
         "<xmax>2</xmax></bndbox></object></annotation>", "ymax"),
    ],
    ids=["unclosed", "empty", "non_numeric", "missing_ymax"],
)
def test_malformed_xml_raises_naming_the_file(tmp_path, text, match):
    path = tmp_path / "bad.xml"
    path.write_text(text)
    with raises_naming(AnnotationError, str(path), match=match):
        parse_voc(path)


def test_missing_xml_file(tmp_path):
    with raises_naming(AnnotationError, "nope.xml", match="does not exist"):
        parse_voc(tmp_path / "nope.xml")


# --------------------------------------------------------------------------------------- resizing


def test_squash_box_transform_hand_computed():
    img = np.zeros((200, 400, 3), np.uint8)  # H=200, W=400
    out, tr = resize_image(img, (100, 100), "squash")
    assert out.shape == (100, 100, 3) and out.dtype == np.float32
    boxes, keep = tr.apply(np.array([[100, 50, 300, 150], [0, 0, 400, 200]]))
    np.testing.assert_allclose(boxes, [[25, 25, 75, 75], [0, 0, 100, 100]])
    assert keep.all()


def test_crop_box_transform_hand_computed():
    # 400×200 → shorter side 200 becomes 100: scaled to 200×100, then the centre 100 columns
    # [50, 150) are kept, so x' = x/2 − 50 and y' = y/2, clipped to [0, 100].
    img = np.zeros((200, 400, 3), np.uint8)
    out, tr = resize_image(img, (100, 100), "crop")
    assert out.shape == (100, 100, 3)
    boxes, keep = tr.apply(
        np.array([
            [150, 50, 250, 150],  # inside the crop: [25, 25, 75, 75]
            [100, 50, 300, 150],  # [0, 25, 100, 75] exactly
            [40, 50, 360, 150],  # [-30, 25, 130, 75] → clipped to [0, 25, 100, 75]
            [0, 0, 90, 200],  # left of the crop: [-50, 0, -5, 100] → zero width, dropped
            [180, 20, 500, 120],  # right part clipped: [40, 10, 200, 60] → [40, 10, 100, 60]
        ])
    )
    np.testing.assert_allclose(boxes[keep], [[25, 25, 75, 75], [0, 25, 100, 75],
                                             [0, 25, 100, 75], [40, 10, 100, 60]])
    np.testing.assert_array_equal(keep, [True, True, True, False, True])


def test_crop_of_a_portrait_image_crops_vertically():
    img = np.zeros((300, 100, 3), np.uint8)  # H=300, W=100 → 50×150, centre rows [50, 100)
    _, tr = resize_image(img, (50, 50), "crop")
    boxes, keep = tr.apply(np.array([[0, 150, 100, 200]]))
    np.testing.assert_allclose(boxes, [[0, 25, 50, 50]])
    assert keep.all()


@pytest.mark.parametrize("mode", ["squash", "crop"])
def test_transformed_box_covers_the_resized_object(mode):
    """The box follows the pixels: a white rectangle drawn at the box lands on the new box."""
    img = np.zeros((200, 400, 3), np.uint8)
    box = np.array([[120, 40, 280, 180]])
    img[40:180, 120:280] = 255
    out, tr = resize_image(img, (64, 64), mode)
    new, keep = tr.apply(box)
    assert keep.all()
    mask = boxes_to_mask(new, (64, 64))
    bright = out[..., 0] > 127
    iou = (mask & bright).sum() / (mask | bright).sum()
    assert iou > 0.95, (mode, new, iou)


def test_resize_rejects_unknown_mode():
    with pytest.raises(ValueError, match="resize mode"):
        resize_image(np.zeros((4, 4, 3), np.uint8), (2, 2), "stretch")


# --------------------------------------------------------------------------------------- masks


def test_mask_is_union_of_half_open_boxes():
    boxes = np.array([[0, 0, 2, 3], [3, 1, 5, 2]], np.float32)
    m = boxes_to_mask(boxes, (4, 6))
    expected = np.zeros((4, 6), bool)
    expected[0:3, 0:2] = True
    expected[1:2, 3:5] = True
    np.testing.assert_array_equal(m, expected)
    # overlapping boxes: union, not a sum
    assert boxes_to_mask(np.array([[0, 0, 4, 4], [2, 2, 6, 4]]), (4, 6)).sum() == 16 + 4


def test_mask_target_class_filter():
    boxes = np.array([[0, 0, 2, 2], [4, 0, 6, 2]], np.float32)
    labels = np.array([3, 7])
    np.testing.assert_array_equal(boxes_to_mask(boxes, (2, 6), labels, 7)[:, 4:], True)
    assert boxes_to_mask(boxes, (2, 6), labels, 7).sum() == 4
    assert boxes_to_mask(boxes, (2, 6), labels, 5).sum() == 0
    assert boxes_to_mask(boxes, (2, 6), labels, None).sum() == 8  # no target: union


def test_masks_batch_with_missing_boxes_and_targets():
    boxes = [np.array([[0, 0, 2, 2], [2, 2, 4, 4]]), None, np.array([[1, 1, 3, 3]])]
    labels = [np.array([1, 2]), None, None]
    masks = boxes_to_masks(boxes, (4, 4), labels, targets=np.array([2, 0, 5]))
    assert masks.shape == (3, 4, 4) and masks.dtype == bool
    assert masks[0].sum() == 4 and masks[0][2:, 2:].all()  # only the box of class 2
    assert masks[1].sum() == 0  # no boxes
    assert masks[2].sum() == 4  # no labels: union


def test_mask_area_does_not_depend_on_box_position():
    """Fractional box edges (from resizing) must be rounded the same way everywhere: a box of width
    3 covers 3 pixels wherever it sits (np.rint rounds 2.5 → 2 but 3.5 → 4)."""
    areas = [boxes_to_mask(np.array([[x, 0, x + 3, 1]]), (1, 20)).sum()
             for x in (1.5, 2.5, 3.5, 4.5)]
    assert areas == [3, 3, 3, 3], areas


# --------------------------------------------------------------------------------------- discovery


def test_discover_folder_recursive_sorted_ignores_non_images(tmp_path):
    write_rgb(tmp_path / "b.jpg")
    write_rgb(tmp_path / "a.PNG")
    write_rgb(tmp_path / "sub" / "c.jpeg")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "d.xml").write_text("<annotation/>")
    samples = discover(tmp_path)
    assert [s.image_id for s in samples] == ["a", "b", "sub/c"]
    assert all(isinstance(s, Sample) and s.path.exists() for s in samples)
    assert all(s.label is None and s.annotation_path is None for s in samples)
    assert [s.image_id for s in discover(tmp_path, limit=2)] == ["a", "b"]


def test_discover_list_file(tmp_path):
    write_rgb(tmp_path / "imgs" / "x.jpg")
    write_rgb(tmp_path / "imgs" / "y.png")
    other = write_rgb(tmp_path / "elsewhere" / "z.jpg")
    lst = tmp_path / "lists" / "files.txt"
    lst.parent.mkdir()
    lst.write_text(f"# a comment\n../imgs/y.png\n\n  ../imgs/x.jpg  \n{other}\n")
    samples = discover(lst)
    assert [s.image_id for s in samples] == ["x", "y", "z"]
    assert samples[0].path.resolve() == (tmp_path / "imgs" / "x.jpg").resolve()
    assert samples[2].path == other


def test_discover_explicit_path_list(tmp_path):
    a, b = write_rgb(tmp_path / "a.jpg"), write_rgb(tmp_path / "b.jpg")
    assert [s.image_id for s in discover([str(b), a])] == ["a", "b"]


def test_discover_imagenet_style_folders_label_from_synset(tmp_path):
    write_rgb(tmp_path / TENCH / "img1.jpg")
    write_rgb(tmp_path / TOILET_TISSUE / "img2.jpg")
    write_rgb(tmp_path / "not_a_synset" / "img3.jpg")
    write_rgb(tmp_path / "top.jpg")
    samples = {s.image_id: s for s in discover(tmp_path)}
    assert samples[f"{TENCH}/img1"].label == 0
    assert samples[f"{TOILET_TISSUE}/img2"].label == 999
    assert samples["not_a_synset/img3"].label is None
    assert samples["top"].label is None


def test_labels_from_csv_index_and_synset_forms(tmp_path):
    for name in ("a", "b", "c", "d"):
        write_rgb(tmp_path / "imgs" / f"{name}.jpg")
    csv = tmp_path / "labels.csv"
    csv.write_text(f"image,label\na.jpg,65\nb,{SEA_SNAKE}\nc.jpg,{TOILET_TISSUE}\n")
    labels = {s.image_id: s.label for s in discover(tmp_path / "imgs", labels_csv=csv)}
    assert labels == {"a": 65, "b": 65, "c": 999, "d": None}


def test_csv_label_overrides_folder_label(tmp_path):
    write_rgb(tmp_path / "imgs" / TENCH / "a.jpg")
    csv = tmp_path / "labels.csv"
    csv.write_text("image,label\na.jpg,7\n")
    assert discover(tmp_path / "imgs", labels_csv=csv)[0].label == 7


@pytest.mark.parametrize(
    "text, match",
    [("file,class\na.jpg,1\n", "image,label"), ("image,label\na.jpg,dog\n", "dog")],
    ids=["bad_header", "bad_label"],
)
def test_bad_labels_csv(tmp_path, text, match):
    write_rgb(tmp_path / "imgs" / "a.jpg")
    csv = tmp_path / "labels.csv"
    csv.write_text(text)
    with raises_naming(DatasetError, "labels.csv", match=match):
        discover(tmp_path / "imgs", labels_csv=csv)
    with pytest.raises(DatasetError, match="does not exist"):
        discover(tmp_path / "imgs", labels_csv=tmp_path / "missing.csv")


def test_labels_from_xml_via_load_batch(tmp_path):
    write_rgb(tmp_path / "a.jpg", size=(100, 80))
    write_rgb(tmp_path / "b.jpg", size=(100, 80))
    write_voc(tmp_path / "a.xml", [("n99999999", (1, 1, 5, 5)), (SEA_SNAKE, (11, 21, 60, 40))])
    samples = discover(tmp_path, annotations=tmp_path)
    assert samples[0].annotation_path == tmp_path / "a.xml"
    assert samples[1].annotation_path is None
    batch = load_batch(samples, (40, 50))
    np.testing.assert_array_equal(batch.labels, [65, -1])
    # squash 100×80 → 50×40: the VOC box (11,21)-(60,40) → [10, 20, 60, 40] / 2
    np.testing.assert_allclose(batch.boxes[0], [[0, 0, 2.5, 2.5], [5, 10, 30, 20]])
    np.testing.assert_array_equal(batch.box_labels[0], [-1, 65])
    assert batch.boxes[1] is None and batch.box_labels[1] is None


def test_label_precedence_csv_then_xml_then_folder(tmp_path):
    """dataset.py's docstring: labels come, in that order of precedence, from the CSV, the XML,
    then the folder name."""
    write_rgb(tmp_path / "imgs" / TENCH / "a.jpg", size=(100, 80))
    (tmp_path / "ann").mkdir()
    write_voc(tmp_path / "ann" / "a.xml", [(SEA_SNAKE, (1, 1, 50, 50))])
    batch = load_batch(discover(tmp_path / "imgs", annotations=tmp_path / "ann"), (40, 50))
    assert batch.labels.tolist() == [65]  # XML (sea snake) before the folder (tench)
    csv = tmp_path / "labels.csv"
    csv.write_text("image,label\na,3\n")
    batch = load_batch(
        discover(tmp_path / "imgs", annotations=tmp_path / "ann", labels_csv=csv), (40, 50)
    )
    assert batch.labels.tolist() == [3]


# --------------------------------------------------------------------------------------- shard


def test_shard_is_a_deterministic_partition():
    samples = [Sample(f"img_{i:03d}", Path(f"/x/img_{i:03d}.jpg")) for i in range(60)]
    for count in (1, 2, 3, 7):
        parts = [shard(samples, i, count) for i in range(count)]
        ids = [s.image_id for p in parts for s in p]
        assert sorted(ids) == sorted(s.image_id for s in samples)  # union = all, disjoint
        assert len(ids) == len(set(ids))
        # deterministic and independent of the order of the input list
        again = [shard(list(reversed(samples)), i, count) for i in range(count)]
        assert [sorted(s.image_id for s in p) for p in again] == [
            sorted(s.image_id for s in p) for p in parts
        ]
    assert all(len(shard(samples, i, 3)) > 0 for i in range(3))


@pytest.mark.parametrize("index, count", [(2, 2), (-1, 2), (0, 0)])
def test_shard_rejects_bad_index(index, count):
    with pytest.raises(ValueError, match="shard"):
        shard([], index, count)


# --------------------------------------------------------------------------------------- batches


def test_load_batch_records_bad_images_and_keeps_the_others(tmp_path):
    write_rgb(tmp_path / "a_good.jpg", size=(40, 30), value=200)
    write_truncated_jpeg(tmp_path / "b_trunc.jpg")
    (tmp_path / "c_empty.jpg").write_bytes(b"")
    (tmp_path / "d_text.jpg").write_text("hello")
    write_rgb(tmp_path / "e_good.png", size=(20, 60), value=10)
    write_rgb(tmp_path / "f_badxml.jpg")
    (tmp_path / "f_badxml.xml").write_text("<annotation><object>")
    samples = discover(tmp_path, annotations=tmp_path)
    batch = load_batch(samples, (16, 24), resize="crop")
    assert batch.image_ids == ["a_good", "e_good"]
    assert batch.images.shape == (2, 16, 24, 3) and batch.images.dtype == np.float32
    np.testing.assert_allclose(batch.images[0, 5, 5], [200, 100, 55], atol=1)
    np.testing.assert_allclose(batch.images[1, 5, 5], [10, 5, 245], atol=1)
    assert len(batch.labels) == len(batch.boxes) == len(batch.notes) == 2
    failed = {s.image_id: msg for s, msg in batch.errors}
    assert set(failed) == {"b_trunc", "c_empty", "d_text", "f_badxml"}
    for image_id, msg in failed.items():
        assert image_id in msg  # the message names the file


def test_load_batch_all_bad_gives_empty_arrays(tmp_path):
    (tmp_path / "x.jpg").write_bytes(b"")
    batch = load_batch(discover(tmp_path), (8, 8))
    assert batch.images.shape == (0, 8, 8, 3) and len(batch.labels) == 0
    assert len(batch.errors) == 1


def test_iter_batches_covers_all_samples_in_order(tmp_path):
    for i in range(5):
        write_rgb(tmp_path / f"{i}.png", size=(10, 10), value=40 * i)
    samples = discover(tmp_path)
    batches = list(iter_batches(samples, (4, 4), batch_size=2))
    assert [len(b.samples) for b in batches] == [2, 2, 1]
    assert [i for b in batches for i in b.image_ids] == ["0", "1", "2", "3", "4"]
    np.testing.assert_allclose([b.images[j, 0, 0, 0] for b in batches for j in range(len(b.samples))],
                               [0, 40, 80, 120, 160])


# --------------------------------------------------------------------------------------- ImageNet index


def test_synset_index_mapping_and_names():
    idx = class_index()
    assert len(idx) == 1000 and sorted(idx) == list(range(1000))
    assert synset_to_index(TENCH) == 0
    assert synset_to_index(TOILET_TISSUE) == 999
    assert synset_to_index(SEA_SNAKE) == 65
    assert synset_to_index("n99999999") is None
    assert index_to_synset(0) == TENCH and index_to_synset(999) == TOILET_TISSUE
    assert class_name(0) == "tench" and class_name(999) == "toilet_tissue"
    assert class_name(65) == "sea_snake"
    assert class_name(1000) == "class_1000"
    synsets = [idx[i][0] for i in range(1000)]
    assert synsets == sorted(synsets) and len(set(synsets)) == 1000  # sorted synset order
    assert all(synset_to_index(s) == i for i, s in enumerate(synsets))


def test_class_index_matches_the_shared_keras_copy():
    ref = SHARED / "imagenet_class_index.json"
    if not ref.exists():
        pytest.skip(f"{ref} absent (the shared sample data is not checked out)")
    keras = {int(k): tuple(v) for k, v in json.loads(ref.read_text()).items()}
    assert class_index() == keras


@pytest.mark.parametrize(
    "value, expected",
    [("65", 65), (65, 65), (" 0 ", 0), (SEA_SNAKE, 65), (TOILET_TISSUE, 999), ("n99999999", None)],
)
def test_parse_label(value, expected):
    assert parse_label(value) == expected


@pytest.mark.parametrize("value", ["dog", "", "n0144x", "6.5"])
def test_parse_label_rejects_garbage(value):
    with pytest.raises(ValueError, match="neither a class index nor a WordNet synset"):
        parse_label(value)


# --------------------------------------------------------------------------------------- real data


@pytest.mark.realdata
def test_imagenet_val15_discover_and_load_with_boxes():
    if not VAL15.is_dir():
        pytest.skip(f"{VAL15} absent: the shared ImageNet sample images are not available")
    samples = discover(VAL15, annotations=VAL15)
    assert len(samples) == 15
    assert samples[0].image_id == "ILSVRC2012_val_00000001"
    assert all(s.annotation_path is not None for s in samples)
    batch = load_batch(samples, (224, 224))
    assert not batch.errors
    assert batch.images.shape == (15, 224, 224, 3)
    assert 0 <= batch.images.min() and batch.images.max() <= 255 and batch.images.std() > 10
    # image 1 is a sea snake (n01751748, class 65), 500×375, VOC box (111,108)-(441,193)
    assert batch.labels[0] == 65
    np.testing.assert_allclose(
        batch.boxes[0], [[110 * 224 / 500, 107 * 224 / 375, 441 * 224 / 500, 193 * 224 / 375]],
        rtol=1e-5,
    )
    # every image has a label and at least one box inside the resized image; image 8 has four
    assert (batch.labels >= 0).all()
    for b in batch.boxes:
        assert b is not None and len(b) >= 1
        assert (b >= 0).all() and (b[:, [0, 2]] <= 224).all() and (b[:, [1, 3]] <= 224).all()
        assert (b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all()
    assert len(batch.boxes[7]) == 4
    for s, ann_boxes, lab in zip(batch.samples, batch.box_labels, batch.labels, strict=True):
        assert lab in ann_boxes, s.image_id
    masks = boxes_to_masks(batch.boxes, (224, 224), batch.box_labels, batch.labels)
    assert masks.shape == (15, 224, 224) and all(m.any() for m in masks)


def test_image_ids_are_unique(tmp_path):
    """Results are keyed by image id: two files must never share one (same stem, other extension,
    or same name in two folders of a list), else one overwrites or 'resumes' the other."""
    write_rgb(tmp_path / "y.jpg")
    write_rgb(tmp_path / "y.png")
    write_rgb(tmp_path / "a" / "x.jpg")
    write_rgb(tmp_path / "b" / "x.jpg")
    lst = tmp_path / "list.txt"
    lst.write_text("a/x.jpg\nb/x.jpg\n")
    for source in (tmp_path, lst, [tmp_path / "a" / "x.jpg", tmp_path / "b" / "x.jpg"]):
        try:
            ids = [s.image_id for s in discover(source)]
        except DatasetError as exc:  # refusing with a clear message is fine too
            assert "x.jpg" in str(exc) or "y." in str(exc)
            continue
        assert len(ids) == len(set(ids)), (source, ids)


def test_labels_csv_with_a_byte_order_mark(tmp_path):
    """Excel's "CSV UTF-8" export starts with a BOM and uses CRLF line ends."""
    write_rgb(tmp_path / "imgs" / "a.jpg")
    csv = tmp_path / "labels.csv"
    csv.write_bytes(f"image,label\r\na.jpg,{SEA_SNAKE}\r\n".encode("utf-8-sig"))
    assert [s.label for s in discover(tmp_path / "imgs", labels_csv=csv)] == [65]


def test_oversized_image_is_a_recorded_error_not_a_crash(tmp_path, monkeypatch):
    """PIL refuses images above 2 × MAX_IMAGE_PIXELS (≈179 MP: huge panoramas, or a crafted
    header); simulated here with a small limit."""
    write_rgb(tmp_path / "a_huge.png", size=(40, 40))
    write_rgb(tmp_path / "b_small.png", size=(4, 4))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(ImageLoadError, match="a_huge.png"):
        load_image(tmp_path / "a_huge.png")
    batch = load_batch(discover(tmp_path), (8, 8))
    assert batch.image_ids == ["b_small"]
    assert [s.image_id for s, _ in batch.errors] == ["a_huge"]


# --------------------------------------------------------------------------------------- issue 19


def test_voc_xml_next_to_an_image_is_found_without_an_annotations_folder(tmp_path):
    write_rgb(tmp_path / "imgs" / "a.jpg", size=(100, 80))
    write_rgb(tmp_path / "imgs" / "sub" / "b.png", size=(100, 80))
    write_rgb(tmp_path / "imgs" / "c.jpg", size=(100, 80))
    write_voc(tmp_path / "imgs" / "a.xml", [(SEA_SNAKE, (11, 21, 60, 40))])
    write_voc(tmp_path / "imgs" / "sub" / "b.xml", [(TENCH, (1, 1, 50, 50))])
    samples = discover(tmp_path / "imgs")
    assert [s.image_id for s in samples] == ["a", "c", "sub/b"]
    assert [s.annotation_path for s in samples] == [
        tmp_path / "imgs" / "a.xml", None, tmp_path / "imgs" / "sub" / "b.xml"]
    batch = load_batch(samples, (40, 50))
    assert batch.labels.tolist() == [65, -1, 0]
    np.testing.assert_allclose(batch.boxes[0], [[5, 10, 30, 20]])
    assert batch.boxes[1] is None


def test_an_annotations_folder_replaces_the_xml_next_to_the_images(tmp_path):
    write_rgb(tmp_path / "imgs" / "a.jpg", size=(100, 80))
    write_voc(tmp_path / "imgs" / "a.xml", [(SEA_SNAKE, (11, 21, 60, 40))])
    (tmp_path / "ann").mkdir()
    write_voc(tmp_path / "ann" / "a.xml", [(TENCH, (1, 1, 50, 50))])
    assert discover(tmp_path / "imgs", annotations=tmp_path / "ann")[0].annotation_path == \
        tmp_path / "ann" / "a.xml"
    (tmp_path / "ann" / "a.xml").unlink()  # a given folder is the only place looked in
    assert discover(tmp_path / "imgs", annotations=tmp_path / "ann")[0].annotation_path is None


def test_a_list_file_finds_the_xml_next_to_each_listed_image(tmp_path):
    write_rgb(tmp_path / "x" / "a.jpg", size=(100, 80))
    write_voc(tmp_path / "x" / "a.xml", [(SEA_SNAKE, (11, 21, 60, 40))])
    lst = tmp_path / "list.txt"
    lst.write_text("x/a.jpg\n")
    assert discover(lst)[0].annotation_path == tmp_path / "x" / "a.xml"


def test_load_images_is_the_cli_loading(tmp_path):
    """The public loader gives what the pipeline's batches hold, with the seeds of image ids."""
    from tfxai.data import image_seeds, load_images

    write_rgb(tmp_path / "b.jpg", size=(100, 80), value=40)
    write_rgb(tmp_path / "a.jpg", size=(100, 80), value=200)
    write_voc(tmp_path / "a.xml", [(SEA_SNAKE, (11, 21, 60, 40))])
    (tmp_path / "bad.png").write_bytes(b"")
    lab = tmp_path / "labels.csv"
    lab.write_text("image,label\nb.jpg,7\n")
    with pytest.warns(UserWarning, match="bad.png"):
        data = load_images(tmp_path, (40, 50), labels=lab, resize="crop")
    samples = [s for s in discover(tmp_path, labels_csv=lab) if s.image_id != "bad"]
    batch = load_batch(samples, (40, 50), "crop")
    assert data.ids == ["a", "b"] == batch.image_ids and len(data) == 2
    np.testing.assert_array_equal(data.images, batch.images)
    assert data.labels.tolist() == [65, 7]
    np.testing.assert_array_equal(data.boxes[0], batch.boxes[0])
    assert data.boxes[1] is None and data.box_labels[0].tolist() == [65]
    assert data.seeds.tolist() == [s.seed_key for s in samples] == image_seeds(["a", "b"]).tolist()
    assert [p.name for p, _ in data.errors] == ["bad.png"]
    assert data.paths == [tmp_path / "a.jpg", tmp_path / "b.jpg"]
    # a backbone-like object gives its input size; --limit's order
    assert load_images(tmp_path / "a.jpg", type("BB", (), {"input_size": (8, 9)})()
                       ).images.shape == (1, 8, 9, 3)
    assert load_images(tmp_path, (8, 8), limit=1).ids == ["a"]
    with pytest.raises(ValueError, match="size"):
        load_images(tmp_path / "a.jpg", 8)


def test_load_images_needs_no_tensorflow():
    import subprocess
    import sys

    code = ("import sys, tfxai; tfxai.load_images; tfxai.sample_images_dir; "
            "sys.exit('tensorflow' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0


def test_sample_images_dir_holds_images_with_their_boxes(tmp_path, monkeypatch):
    from tfxai.data.samples import SAMPLE_NAMES, annotations_dir, sample_images_dir

    monkeypatch.setenv("TFXAI_SAMPLES_DIR", str(tmp_path / "s"))
    folder = sample_images_dir()
    assert folder == tmp_path / "s"
    for name in SAMPLE_NAMES:
        assert (folder / f"{name}.xml").read_bytes() == (annotations_dir() / f"{name}.xml"
                                                         ).read_bytes()
    samples = discover(folder)
    assert sorted(s.image_id for s in samples) == sorted(SAMPLE_NAMES)
    batch = load_batch(samples, (64, 64))
    assert not batch.errors and all(b is not None and len(b) for b in batch.boxes)
    # the PNG is the photograph at its original size (the XML's <size>)
    chelsea = load_image(folder / "chelsea.png")
    assert chelsea.shape == (300, 451, 3)
    # a stale XML is replaced, an existing PNG kept as it is
    (folder / "coffee.xml").write_text("<annotation/>")
    stamp = (folder / "coffee.png").stat().st_mtime_ns
    sample_images_dir()
    assert (folder / "coffee.xml").read_bytes() == (annotations_dir() / "coffee.xml").read_bytes()
    assert (folder / "coffee.png").stat().st_mtime_ns == stamp
    assert not [p for p in folder.iterdir() if p.suffix == ".tmp"]


def test_sample_images_dir_falls_back_to_a_temporary_folder(tmp_path, monkeypatch):
    from tfxai.data import samples

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("TFXAI_SAMPLES_DIR", str(blocker / "s"))  # cannot be created
    monkeypatch.setattr(samples.tempfile, "gettempdir", lambda: str(tmp_path / "tmp"))
    folder = samples.sample_images_dir()
    assert folder.parent == tmp_path / "tmp" and (folder / "rocket.png").is_file()


def test_annotations_dir_is_found_where_pip_installs_it(tmp_path, monkeypatch):
    """An installed tfxai has no source checkout: the XML files are where setup.cfg's
    data_files put them, found through the distribution's file list (any install scheme)."""
    from importlib import metadata

    from tfxai.data import samples

    source = samples.annotations_dir()
    installed = tmp_path / "prefix" / "share" / "tfxai" / "annotations"
    installed.mkdir(parents=True)
    for name in samples.SAMPLE_NAMES:
        (installed / f"{name}.xml").write_bytes((source / f"{name}.xml").read_bytes())
    site = tmp_path / "prefix" / "lib" / "site-packages"

    class Dist:
        files = [metadata.PackagePath("../../share/tfxai/annotations/chelsea.xml"),
                 metadata.PackagePath("tfxai/__init__.py")]

        @staticmethod
        def locate_file(path):
            return site / path

    monkeypatch.setattr(metadata, "distribution", lambda name: Dist)
    monkeypatch.setattr(samples, "__file__", str(tmp_path / "no-checkout" / "tfxai" / "data"
                                                 / "samples.py"))
    assert samples.annotations_dir() == installed
    installed.joinpath("rocket.xml").unlink()  # an incomplete folder is not taken
    with pytest.raises(FileNotFoundError, match="annotations"):
        monkeypatch.setattr(samples.sysconfig, "get_paths",
                            lambda *a: {"data": str(tmp_path / "nowhere")})
        monkeypatch.setattr(samples.sys, "prefix", str(tmp_path / "nowhere"))
        monkeypatch.setattr(samples.sys, "base_prefix", str(tmp_path / "nowhere"))
        samples.annotations_dir()
