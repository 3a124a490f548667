"""The augmentation set of the augmentation-robustness study: rotations and the five G'MIC filters.

Each filter must change a real photograph (scikit-image's chelsea, 300×451: an odd width; and one
ImageNet validation photograph from ../shared/data when present) while keeping its size and 0..255
range.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from skimage import data

from tfxai.evaluation.augment import AUGMENTATIONS, GMIC_COMMANDS, ROTATIONS, augment, rotate

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-val-15"


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return data.chelsea().astype(np.float32)  # (300, 451, 3)


def test_the_nine_variants():
    assert list(AUGMENTATIONS) == ["rotate_-30", "rotate_-15", "rotate_15", "rotate_30",
                                   "boost_chromaticity", "freaky_details", "normalize_local",
                                   "mighty_details", "sharpen"]


@pytest.mark.parametrize("name", list(GMIC_COMMANDS))
def test_gmic_filter_changes_a_photo_and_keeps_size_and_range(photo, name):
    out = augment(photo[None], name)
    assert out.shape == (1, *photo.shape) and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 255.0
    diff = np.abs(out[0] - photo)
    assert diff.mean() > 2.0, f"{name} barely changes the picture (mean |Δ| = {diff.mean():.2f})"
    assert out.max() > 200  # not a collapsed image
    # structure kept: the filtered photo still correlates strongly with the original
    assert np.corrcoef(out[0].ravel(), photo.ravel())[0, 1] > 0.6


def test_filters_act_as_named(photo):
    x = photo[None]
    from skimage.color import rgb2ycbcr

    # chroma boost equalises the Cb/Cr histograms: the chroma spread grows
    spread = lambda im: rgb2ycbcr(im[0] / 255.0)[..., 1:].std(axis=(0, 1))  # noqa: E731
    assert np.all(spread(augment(x, "boost_chromaticity")) > 1.3 * spread(x))
    grad = lambda im: np.abs(np.diff(im.mean(-1), axis=2)).mean()  # noqa: E731 - detail proxy
    for name in ("sharpen", "mighty_details", "freaky_details"):
        assert grad(augment(x, name)) > 1.1 * grad(x), name
    # local normalisation stretches local contrast: local std grows on average
    from scipy import ndimage

    def local_std(im):
        g = im[0].mean(-1)
        m = ndimage.uniform_filter(g, 21)
        return np.sqrt(np.maximum(ndimage.uniform_filter(g * g, 21) - m * m, 0)).mean()

    assert local_std(augment(x, "normalize_local")) > 1.1 * local_std(x)


def test_rotations_black_fill_same_size(photo):
    x = photo[None, :225, :301]  # odd sizes
    for name in ROTATIONS:
        out = augment(x, name)
        assert out.shape == x.shape
        assert np.all(out[0, 0, 0] == 0) and np.all(out[0, -1, -1] == 0)  # corners filled black
        assert out.min() >= 0 and out.max() <= 255
        c = np.array(x.shape[1:3]) // 2
        np.testing.assert_allclose(out[0, c[0], c[1]], x[0, c[0], c[1]], atol=30)  # centre kept
    back = rotate(rotate(x, 15.0), -15.0)
    inner = (slice(None), slice(80, 145), slice(110, 190))
    assert np.abs(back[inner] - x[inner]).mean() < 10  # rotating back restores the centre


def test_rotation_direction_is_counter_clockwise():
    m = np.zeros((1, 21, 21), np.float32)
    m[0, 10, 15:] = 1.0  # a bar pointing right
    out = rotate(m, 90.0)
    assert out[0, :6, 10].sum() > 4  # now points up


def test_greyscale_and_single_images_become_rgb(photo):
    grey = photo.mean(-1)[:101, :151]  # (H, W), odd size
    for name in ("rotate_15", "sharpen"):
        out = augment(grey, name)
        assert out.shape == (101, 151, 3)
        np.testing.assert_allclose(out[..., 0], out[..., 1])
        assert augment(grey[..., None], name).shape == (101, 151, 3)
        assert augment(photo[:101, :151], name).shape == (101, 151, 3)


def test_bad_images_raise_clear_errors(photo):
    rgba = np.concatenate([photo, np.full(photo.shape[:2] + (1,), 255.0, np.float32)], -1)
    with pytest.raises(ValueError, match="1 \\(greyscale\\) or 3 \\(RGB\\) channels"):
        augment(rgba, "sharpen")
    with pytest.raises(ValueError, match="unknown augmentation 'blur'"):
        augment(photo, "blur")
    bad = photo.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        augment(bad, "rotate_15")
    with pytest.raises(ValueError, match="images must be"):
        augment(np.zeros((2, 2, 8, 8, 3)), "sharpen")


@pytest.mark.realdata
@pytest.mark.skipif(not DATA.is_dir(), reason=f"real photographs not found at {DATA}")
def test_filters_on_an_imagenet_photo():
    from PIL import Image

    img = Image.open(sorted(DATA.glob("*.JPEG"))[0]).convert("RGB").resize((224, 224))
    x = np.asarray(img, np.float32)[None]
    out = np.stack([augment(x, n)[0] for n in AUGMENTATIONS])
    assert out.shape == (9, 224, 224, 3) and out.min() >= 0 and out.max() <= 255
    assert np.all(np.abs(out - x).reshape(9, -1).mean(axis=1) > 2.0)


def test_gmic_result_is_read_as_8_bit_values():
    from tfxai.evaluation.augment import gmic_filter

    x = np.full((1, 4, 5, 3), 200.4, np.float32)
    x[0, 0, 0] = 10.7
    up = gmic_filter(x, "add 100")  # 300.4 is clamped, 110.7 truncated
    assert up[0, 0, 0, 0] == 110.0 and (up[0, 1:] == 255.0).all()
    down = gmic_filter(x, "sub 20")
    assert down[0, 0, 0, 0] == 0.0 and (down[0, 1:] == 180.0).all()
    assert down.shape == x.shape and down.dtype == np.float32


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:")) / 1024


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_gmic_filter_does_not_leak():
    """gmic 3.6's ``yxc`` view kept every result's buffer: 60 calls on 8 images of 128×128
    grew the process by ~23 MB. Reading with ``to_numpy`` keeps it flat."""
    from tfxai.evaluation.augment import gmic_filter

    x = np.random.default_rng(0).uniform(0, 255, (8, 128, 128, 3)).astype(np.float32)
    for _ in range(5):  # warm-up: G'MIC's own one-off allocations
        gmic_filter(x, "add 1")
    before = _rss_mb()
    for _ in range(60):
        gmic_filter(x, "add 1")
    assert _rss_mb() - before < 8.0
