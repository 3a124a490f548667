"""Localisation metrics on hand-made 8×8 maps and boxes with hand-computed answers.

Maps go in as raw (N, 8, 8) attributions without an attributer, so ``ctx.maps()`` applies
``to_map``'s defaults (signed, scaled by max |map|) unless a test says otherwise.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

import tfxai
from tfxai.evaluation import MetricInputError

H = W = 8
LOCALISATION = [
    "iou", "iou_star", "box_iou", "pointing_game", "energy_pointing_game",
    "relevance_rank_accuracy",
]


def evaluate(name, maps, boxes, targets=None, labels=None, **params):
    maps = np.asarray(maps, dtype=np.float32)
    if maps.ndim == 2:
        maps = maps[None]
    n = len(maps)
    if boxes is not None and not isinstance(boxes, list):
        boxes = [np.asarray(boxes, dtype=np.float32).reshape(-1, 4)] * n
    targets = np.zeros(n, int) if targets is None else np.asarray(targets)
    metric = tfxai.get_metric(name, **params)
    return metric.evaluate(
        None, None, np.zeros((n, H, W, 3), np.float32), targets,
        attributions=maps, boxes=boxes, box_labels=labels,
    )


def value(name, maps, boxes, variant="", **kw):
    return evaluate(name, maps, boxes, **kw).values[variant]


def box(*b):
    return np.asarray(b, dtype=np.float32).reshape(-1, 4)


# ------------------------------------------------------------------------------ IOU / IOU* (Gattas)


def gattas_map(sign=1.0):
    """4 pixels of |1| and 4 of 0.2 inside M = [0,0,4,4]; 4 of 0.2 outside; σ(|map|) ≈ 0.2446.

    mean = 5.6/64 = 0.0875, E[a²] = 4.32/64 = 0.0675, σ = sqrt(0.0675 − 0.0875²) = 0.24463.
    k = 0.5 → threshold 0.122 keeps the 0.2 pixels; k = 1 → 0.245 drops them.
    """
    m = np.zeros((H, W), np.float32)
    m[0:2, 0:2] = sign * 1.0
    m[2, 0:4] = 0.2
    m[5, 0:4] = 0.2
    return m


GATTAS_BOX = box(0, 0, 4, 4)  # |M| = 16


def test_iou_gattas_threshold_on_abs_map_with_union_denominator():
    m = gattas_map(sign=-1.0)  # the strongest pixels are negative: only |map| selects them
    # k = 0.5: A'>0 = 12 pixels, 8 inside M; union = 16 + 4 = 20 → 8/20 (|M| would give 0.5,
    # |A'>0| would give 0.667; a signed threshold would drop the −1 pixels: 4/20 = 0.2).
    assert value("iou", m, GATTAS_BOX)[0] == pytest.approx(0.4)
    # k = 1: only the four |1| pixels survive, all inside M: 4 / 16.
    assert value("iou", m, GATTAS_BOX, k=1.0)[0] == pytest.approx(0.25)
    # the sign does not matter: the same map with positive peaks gives the same values
    assert value("iou", -m, GATTAS_BOX, k=1.0)[0] == pytest.approx(0.25)
    assert value("iou", gattas_map(), GATTAS_BOX)[0] == pytest.approx(0.4)


def test_iou_star_weights_by_scaled_abs_map():
    m = gattas_map(sign=-1.0)
    # default k = 1: Σ_M A' = 4·1 = 4 over union 16
    assert value("iou_star", m, GATTAS_BOX)[0] == pytest.approx(0.25)
    # k = 0.5: Σ_M A' = 4 + 4·0.2 = 4.8 over union 20
    assert value("iou_star", m, GATTAS_BOX, k=0.5)[0] == pytest.approx(0.24)
    # invariant to the raw attribution's scale (A' is |map| / max |map|)
    assert value("iou_star", 7.0 * m, GATTAS_BOX, k=0.5)[0] == pytest.approx(0.24)


def test_iou_defaults_k():
    assert tfxai.get_metric("iou").params["k"] == 0.5
    assert tfxai.get_metric("iou_star").params["k"] == 1.0


def two_box_map():
    """1 at (0,0) [box A], 0.5 at (7,7) [box B], 1 at (4,4) [outside]."""
    m = np.zeros((H, W), np.float32)
    m[0, 0] = 1.0
    m[7, 7] = 0.5
    m[4, 4] = 1.0
    return m


TWO_BOXES = box([0, 0, 2, 2], [6, 6, 8, 8])  # |M| = 8 for the union
TWO_LABELS = np.array([3, 5])


def test_iou_multiple_boxes_union_and_class_filter():
    m = two_box_map()
    # σ(|map|) with values {1, 1, 0.5}: 0.1834; both k keep all three pixels.
    # union of boxes: A'>0 ∩ M = 2, union = 8 + 1 = 9
    assert value("iou", m, TWO_BOXES)[0] == pytest.approx(2 / 9)
    assert value("iou_star", m, TWO_BOXES)[0] == pytest.approx(1.5 / 9)
    # target 3 → M = box A (4 px): ∩ = 1, union = 4 + 2 = 6
    kw = {"labels": [TWO_LABELS], "mask": "target"}
    assert value("iou", m, TWO_BOXES, targets=[3], **kw)[0] == pytest.approx(1 / 6)
    assert value("iou_star", m, TWO_BOXES, targets=[3], **kw)[0] == pytest.approx(1 / 6)
    # target 5 → box B; IOU* weighs its 0.5 pixel
    assert value("iou", m, TWO_BOXES, targets=[5], **kw)[0] == pytest.approx(1 / 6)
    assert value("iou_star", m, TWO_BOXES, targets=[5], **kw)[0] == pytest.approx(0.5 / 6)
    # labels given but mask="union": all boxes
    assert value("iou", m, TWO_BOXES, targets=[5], labels=[TWO_LABELS])[0] == pytest.approx(2 / 9)


@pytest.mark.parametrize("name", LOCALISATION)
def test_target_mask_without_target_boxes_is_nan_with_note(name):
    out = evaluate(name, two_box_map(), TWO_BOXES, targets=[7], labels=[TWO_LABELS], mask="target")
    for v, vals in out.values.items():
        assert np.isnan(vals[0])
        assert out.notes[v][0] == "no boxes of the target class"


def test_target_mask_needs_labels():
    with pytest.raises(MetricInputError, match="box_labels"):
        evaluate("iou", two_box_map(), TWO_BOXES, mask="target")
    out = evaluate("iou", two_box_map(), TWO_BOXES, labels=[None], mask="target")
    assert np.isnan(out.values[""][0]) and out.notes[""][0] == "no box labels"


# ------------------------------------------------------------------------------ degenerate input


EXPECTED_CONSTANT = {  # M = [0,0,4,4]: 16 of 64 pixels
    ("iou", ""): 0.25,
    ("iou_star", ""): 0.25,
    ("box_iou", ""): 0.25,  # the whole image [0,0,8,8] against [0,0,4,4]
    ("box_iou", "hit"): 0.0,
    ("pointing_game", ""): 0.25,  # ties="mean": share of tied maxima in M
    ("energy_pointing_game", ""): 0.25,
    ("relevance_rank_accuracy", ""): 0.25,
}


@pytest.mark.parametrize("name", LOCALISATION)
def test_constant_and_zero_maps_defined_with_note_and_no_warnings(name):
    maps = np.stack([np.full((H, W), 3.0), np.zeros((H, W))]).astype(np.float32)
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        out = evaluate(name, maps, GATTAS_BOX)
    for v, vals in out.values.items():
        assert vals[0] == pytest.approx(EXPECTED_CONSTANT[(name, v)])
        assert out.notes[v][0] == "constant map"
        assert out.notes[v][1].startswith("all-zero map")
        if name in ("pointing_game", "relevance_rank_accuracy"):
            # rank-based: every pixel ties, as for the constant map → chance level |M|/(H·W)
            assert vals[1] == pytest.approx(0.25)
        else:  # nothing is selected / no energy
            assert vals[1] == 0.0


@pytest.mark.parametrize("name", LOCALISATION)
def test_missing_boxes_and_non_finite_maps(name):
    maps = np.stack([gattas_map(), gattas_map(), gattas_map()])
    maps[2, 3, 3] = np.nan
    out = evaluate(name, maps, [GATTAS_BOX, None, GATTAS_BOX])
    for v, vals in out.values.items():
        assert np.isfinite(vals[0])
        assert np.isnan(vals[1]) and out.notes[v][1] == "no boxes"
        assert np.isnan(vals[2]) and out.notes[v][2] == "non-finite attribution"
    with pytest.raises(MetricInputError, match="bounding boxes"):
        evaluate(name, maps, None)


@pytest.mark.parametrize("name", LOCALISATION)
def test_batch_equals_one_by_one(name):
    rng = np.random.default_rng(0)
    maps = rng.normal(size=(5, H, W)).astype(np.float32)
    maps[3] = 0.0
    boxes = [box(0, 0, 4, 4), box([1, 2, 5, 7], [6, 0, 8, 3]), box(2.4, 2.6, 7.5, 6), box(0, 0, 8, 8),
             box(3, 3, 4, 4)]
    batch = evaluate(name, maps, boxes)
    for i in range(5):
        one = evaluate(name, maps[i : i + 1], [boxes[i]])
        for v in batch.values:
            assert batch.values[v][i] == pytest.approx(one.values[v][0])
            assert batch.notes[v][i] == one.notes[v][0]


# ------------------------------------------------------------------------------ box IoU


def test_box_iou_largest_component_best_box_and_hit():
    m = np.zeros((H, W), np.float32)
    m[0:3, 0:3] = 1.0  # 9 px → box [0,0,3,3]
    m[5:7, 5:7] = 0.5  # 4 px, also above 0.2·max
    m[7, 0] = 0.1  # below τ·max
    boxes = box([5, 5, 7, 7], [0, 0, 4, 4])
    out = evaluate("box_iou", m, boxes)
    assert out.values[""][0] == pytest.approx(9 / 16)  # best match: the second GT box
    assert out.values["hit"][0] == 1.0
    assert out.extras[""][0]["box"] == [0, 0, 3, 3]
    assert out.extras[""][0]["tau"] == pytest.approx(0.2)
    # hit threshold: 0.5625 < 0.6
    assert value("box_iou", m, boxes, variant="hit", hit_iou=0.6)[0] == 0.0


def test_box_iou_uses_8_connectivity():
    m = np.zeros((H, W), np.float32)
    m[[0, 1, 2, 3], [0, 1, 2, 3]] = 1.0  # a diagonal chain: one 8-connected component of 4 px
    m[7, 0:3] = 1.0  # a 3 px bar (the largest component under 4-connectivity)
    out = evaluate("box_iou", m, box(0, 0, 4, 4))
    assert out.extras[""][0]["box"] == [0, 0, 4, 4]
    assert out.values[""][0] == pytest.approx(1.0)
    assert out.values["hit"][0] == 1.0


def test_box_iou_fractional_gt_and_class_filter():
    m = np.zeros((H, W), np.float32)
    m[0:3, 0:3] = 1.0  # predicted box [0,0,3,3], area 9
    # continuous coordinates: GT [0.5,0,3,3] has area 7.5, all inside → 7.5/9
    assert value("box_iou", m, box(0.5, 0, 3, 3))[0] == pytest.approx(7.5 / 9)
    gts, labels = box([0, 0, 3, 3], [0, 0, 6, 6]), [np.array([2, 4])]
    kw = {"labels": labels, "mask": "target"}
    assert value("box_iou", m, gts, targets=[4], **kw)[0] == pytest.approx(9 / 36)
    assert value("box_iou", m, gts, targets=[4], variant="hit", **kw)[0] == 0.0
    assert value("box_iou", m, gts, targets=[2], **kw)[0] == pytest.approx(1.0)
    assert value("box_iou", m, gts, targets=[4], labels=labels)[0] == pytest.approx(1.0)


def test_box_iou_sweep_reports_best_tau():
    m = np.zeros((H, W), np.float32)
    m[0:4, 0:4] = 0.3
    m[0:2, 0:2] = 1.0
    gt = box(0, 0, 2, 2)
    # τ = 0.2 keeps the 4×4 square: IoU 4/16
    assert value("box_iou", m, gt)[0] == pytest.approx(0.25)
    out = evaluate("box_iou", m, gt, sweep=True)
    assert out.values[""][0] == pytest.approx(1.0)
    assert out.values["hit"][0] == 1.0
    assert out.extras[""][0]["tau"] == pytest.approx(0.35)  # the smallest τ that drops the 0.3 ring
    assert out.extras[""][0]["ious"][0.3] == pytest.approx(0.25)


def test_box_iou_no_positive_values():
    m = -np.ones((H, W), np.float32)
    m[0, 0] = -0.5
    out = evaluate("box_iou", m, box(0, 0, 4, 4))
    assert out.values[""][0] == 0.0 and out.values["hit"][0] == 0.0
    assert out.notes[""][0] == "no positive map values"


# ------------------------------------------------------------------------------ pointing game


def test_pointing_game_hit_and_miss():
    m = np.zeros((2, H, W), np.float32)
    m[0, 1, 2] = 1.0  # inside [0,0,4,4]
    m[1, 5, 5] = 1.0  # outside
    m[:, 0, 0] = 0.9
    assert value("pointing_game", m, box(0, 0, 4, 4)).tolist() == [1.0, 0.0]


@pytest.mark.parametrize(
    ("ties", "outside_first", "expected"),
    [("mean", True, 0.5), ("any", True, 1.0), ("first", True, 0.0), ("first", False, 1.0),
     ("mean", False, 0.5)],
)
def test_pointing_game_ties(ties, outside_first, expected):
    m = np.zeros((H, W), np.float32)
    if outside_first:
        gt = box(0, 4, 4, 8)  # rows 4..7, cols 0..3
        m[0, 6] = 1.0  # outside M, first in raster order
        m[6, 1] = 1.0  # inside M
    else:
        gt = box(0, 0, 4, 4)
        m[1, 1] = 1.0  # inside M, first in raster order
        m[6, 6] = 1.0  # outside M
    out = evaluate("pointing_game", m, gt, ties=ties)
    assert out.values[""][0] == pytest.approx(expected)
    assert out.notes[""][0] == "2 tied maxima"


def test_pointing_game_tolerance_is_euclidean():
    m = np.zeros((2, H, W), np.float32)
    m[0, 0, 7] = 1.0  # 4 px right of M's nearest pixel (0,3)
    m[1, 6, 6] = 1.0  # √18 ≈ 4.24 from M's corner (3,3); Chebyshev distance 3
    gt = box(0, 0, 4, 4)
    assert value("pointing_game", m, gt).tolist() == [0.0, 0.0]
    assert value("pointing_game", m, gt, tolerance=3).tolist() == [0.0, 0.0]
    assert value("pointing_game", m, gt, tolerance=4).tolist() == [1.0, 0.0]
    assert value("pointing_game", m, gt, tolerance=5).tolist() == [1.0, 1.0]


def test_pointing_game_class_filtered_and_raw_channels():
    m = two_box_map()
    m[4, 4] = 0.0
    m[7, 7] = 2.0  # the maximum, in box B (label 5)
    kw = {"labels": [TWO_LABELS], "mask": "target"}
    assert value("pointing_game", m, TWO_BOXES, targets=[5], **kw)[0] == 1.0
    assert value("pointing_game", m, TWO_BOXES, targets=[3], **kw)[0] == 0.0
    # raw (N,H,W,3) attribution without attributer: to_map sums the channels
    raw = np.zeros((1, H, W, 3), np.float32)
    raw[0, 1, 1] = [1.0, 1.0, 1.0]  # sum 3, max |·| 1   — in M
    raw[0, 6, 6] = [2.5, 0.0, 0.0]  # sum 2.5, max |·| 2.5 — outside
    assert value("pointing_game", raw, box(0, 0, 4, 4))[0] == 1.0
    assert value("pointing_game", raw, box(0, 0, 4, 4), map_reduce="max_abs")[0] == 0.0


def test_signed_map_and_map_absolute():
    m = np.zeros((H, W), np.float32)
    m[1, 1] = 0.5  # in M
    m[6, 6] = -1.0  # outside, largest |value|
    assert value("pointing_game", m, box(0, 0, 4, 4))[0] == 1.0
    assert value("pointing_game", m, box(0, 0, 4, 4), map_absolute=True)[0] == 0.0
    metric = tfxai.get_metric("pointing_game", map_absolute=True)
    assert '"map_absolute":true' in metric.metric_params_json()


def test_uses_attributer_map_defaults():
    class Stub:  # an attributer whose default map is max |channel|, abs
        def to_map(self, raw, **over):
            return tfxai.to_map(raw, **{"reduce": "max_abs", "absolute": True, "scale": "max", **over})

    raw = np.zeros((1, H, W, 3), np.float32)
    raw[0, 1, 1] = [1.0, 1.0, 1.0]
    raw[0, 6, 6] = [-2.5, 0.0, 0.0]
    metric = tfxai.get_metric("pointing_game")
    kw = {"attributions": raw, "boxes": [box(0, 0, 4, 4)]}
    x = np.zeros((1, H, W, 3), np.float32)
    assert metric.score(None, Stub(), x, [0], **kw)[0] == 0.0
    assert metric.score(None, None, x, [0], **kw)[0] == 1.0


# ------------------------------------------------------------------------------ energy, rank accuracy


def test_energy_pointing_game_counts_positive_part_only():
    m = np.zeros((H, W), np.float32)
    m[0, 0:2] = 1.0  # in M: energy 2
    m[6, 0:4] = 0.5  # outside: energy 2
    m[1, 0:3] = -1.0  # negative, in M: ignored
    assert value("energy_pointing_game", m, box(0, 0, 4, 4))[0] == pytest.approx(0.5)
    # multiple boxes: add [0,6,4,7] → the 0.5 row is in M too
    assert value("energy_pointing_game", m, box([0, 0, 4, 4], [0, 6, 4, 7]))[0] == pytest.approx(1.0)
    out = evaluate("energy_pointing_game", -np.abs(m) - 0.1, box(0, 0, 4, 4))
    assert out.values[""][0] == 0.0 and out.notes[""][0] == "no positive map values"


def test_relevance_rank_accuracy_and_ties():
    gt = box(0, 0, 2, 2)  # K = 4
    m = np.zeros((H, W), np.float32)
    m[0, 0], m[0, 1], m[1, 0] = 1.0, 0.9, 0.8  # 3 of the top 4 in M
    m[5, 5] = 0.85
    m[1, 1] = 0.1
    assert value("relevance_rank_accuracy", m, gt)[0] == pytest.approx(0.75)
    # ties at the K-th value: 2 above (in M), 4 tied at 0.5 (1 in M) for 2 slots → (2 + 2·¼)/4
    m = np.zeros((H, W), np.float32)
    m[0, 0] = m[0, 1] = 1.0
    m[1, 0] = 0.5
    m[4, 4] = m[5, 5] = m[6, 6] = 0.5
    assert value("relevance_rank_accuracy", m, gt)[0] == pytest.approx(0.625)


def test_bad_parameters():
    with pytest.raises(ValueError, match="mask"):
        tfxai.get_metric("iou", mask="boxes")
    with pytest.raises(ValueError, match="tolerance"):
        tfxai.get_metric("pointing_game", tolerance=-1)
    with pytest.raises(ValueError, match="tau"):
        tfxai.get_metric("box_iou", tau=1.5)
    with pytest.raises(ValueError, match="map_reduce"):
        tfxai.get_metric("energy_pointing_game", map_reduce="median")


def test_metadata():
    for name in LOCALISATION:
        cls = type(tfxai.get_metric(name))
        assert cls.family == "localisation" and cls.direction == "higher" and cls.needs_boxes
    assert tfxai.get_metric("box_iou").variants == ("", "hit")


# ------------------------------------------------------------------------------ real photos and boxes

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-val-15"


@pytest.mark.realdata
@pytest.mark.skipif(not DATA.is_dir(), reason=f"{DATA} is absent (real ImageNet val images + boxes)")
def test_real_boxes_with_gradcam_on_a_tiny_model():
    """On the 15 real images with their XML boxes: every metric gives values in [0, 1] and, with
    mask="target" and the label as target, no image lacks a box of its class (ImageNet val boxes all
    carry the image's class)."""
    from tfxai.backend import keras
    from tfxai.data import discover, load_batch

    keras.utils.set_random_seed(0)
    inp = keras.Input((64, 64, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inp)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(x)
    x = keras.layers.MaxPooling2D(4)(x)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="last")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(1000)(x)
    bb = tfxai.load_model(keras.Model(inp, out), output="logits")
    batch = load_batch(discover(DATA, annotations=DATA), bb.input_size)
    assert len(batch.images) == 15 and all(b is not None and len(b) for b in batch.boxes)
    att = tfxai.get_attributer("gradcam", bb)
    raw = att.attribute(batch.images, batch.labels)
    for name in LOCALISATION:
        for mask in ("union", "target"):
            out = tfxai.get_metric(name, mask=mask).evaluate(
                bb, att, batch.images, batch.labels, attributions=raw, boxes=batch.boxes,
                box_labels=batch.box_labels,
            )
            for v, vals in out.values.items():
                assert np.isfinite(vals).all(), (name, mask, v, out.notes[v])
                assert ((vals >= 0) & (vals <= 1)).all(), (name, mask, v)
