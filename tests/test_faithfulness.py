"""Faithfulness metrics: infidelity, ROAD (noisy linear imputation), deletion and insertion.

Closed-form checks on tiny Keras models (identity preprocessing, 0..255 input, logits output).
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from scipy import ndimage

import tfxai
from tfxai.backend import keras
from tfxai.evaluation.faithfulness import Infidelity, curve_auc
from tfxai.evaluation.road import noisy_linear_impute

L = keras.layers
SIZE = 8


def _wrap(model: keras.Model) -> tfxai.Backbone:
    return tfxai.load_model(model, output="logits")


def linear_model(seed: int = 0, classes: int = 3) -> tfxai.Backbone:
    """f(x) = W·x + b (logits)."""
    keras.utils.set_random_seed(seed)
    inp = L.Input((SIZE, SIZE, 3))
    out = L.Dense(classes, kernel_initializer=keras.initializers.RandomUniform(-0.01, 0.01),
                  bias_initializer="ones")(L.Flatten()(inp))
    return _wrap(keras.Model(inp, out))


def small_cnn(seed: int = 0, classes: int = 3) -> tfxai.Backbone:
    keras.utils.set_random_seed(seed)
    inp = L.Input((SIZE, SIZE, 3))
    x = L.Rescaling(1 / 255)(inp)
    x = L.Conv2D(4, 3, padding="same", activation="tanh")(x)
    x = L.Flatten()(x)
    out = L.Dense(classes)(x)
    return _wrap(keras.Model(inp, out))


def lambda_model(fn) -> tfxai.Backbone:
    """Two logits: [fn(x), 0]."""
    inp = L.Input((SIZE, SIZE, 3))
    z = L.Lambda(lambda x: tf.stack([fn(x), tf.zeros_like(fn(x))], axis=1))(inp)
    return _wrap(keras.Model(inp, z))


def images(n: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (n, SIZE, SIZE, 3)).astype(np.float32)


def naive_infidelity(bb, x, t, phi, metric: Infidelity, seed: int) -> float:
    """One perturbation at a time, float64: the definition of Yeh et al. 2019, with Φ scaled by
    the optimal β = E[IᵀΦ·ΔF] / E[(IᵀΦ)²] when the metric normalises (Captum)."""
    noise = metric.noise(seed, x.shape)
    f_x = float(bb.target_logits(x[None], [t])[0])
    dots, dfs = [], []
    for eps in noise:
        dfs.append(f_x - float(bb.target_logits((x - eps)[None], [t])[0]))
        dots.append(np.sum(eps.astype(np.float64) * phi))
    dots, dfs = np.array(dots), np.array(dfs)
    if metric.params["normalize"]:
        dots = dots * (dots * dfs).mean() / (dots**2).mean()
    return float(np.mean((dots - dfs) ** 2))


# --------------------------------------------------------------------------------------- infidelity


def test_infidelity_of_gradient_on_linear_model_is_zero():
    bb = linear_model()
    x = images(3)
    t = np.array([0, 1, 2])
    sal = tfxai.get_attributer("saliency", bb)
    raw = sal.attribute(x, t)
    w = bb.keras_model.layers[-1].get_weights()[0]  # (d, classes)
    np.testing.assert_allclose(raw.reshape(3, -1), w[:, t].T, rtol=1e-6)  # the signed gradient
    metric = tfxai.get_metric("infidelity")
    assert metric.params["normalize"] is True  # the default: comparable across methods
    values = metric.score(bb, sal, x, t, attributions=raw)
    assert values.shape == (3,)
    assert np.all(values >= 0) and np.all(values < 1e-6), values
    # the normalised form ignores the scale: twice the gradient is as faithful...
    np.testing.assert_allclose(metric.score(bb, sal, x, t, attributions=raw * 2.0), 0, atol=1e-6)
    # ...the raw form does not
    raw_form = tfxai.get_metric("infidelity", normalize=False)
    assert np.all(raw_form.score(bb, sal, x, t, attributions=raw) < 1e-6)
    assert np.all(raw_form.score(bb, sal, x, t, attributions=raw * 2.0) > 1e-3)
    # a wrong attribution is not faithful in either form: the metric can fail
    wrong = np.random.default_rng(0).permutation(raw.reshape(-1)).reshape(raw.shape)
    assert np.all(metric.score(bb, sal, x, t, attributions=wrong) > 1e-3)


def test_infidelity_matches_the_naive_definition_on_a_cnn():
    bb = small_cnn()
    x = images(2, seed=1)
    t = np.array([1, 2])
    sal = tfxai.get_attributer("saliency", bb)
    raw = sal.attribute(x, t)
    for normalize in (False, True):
        metric = tfxai.get_metric("infidelity", sigma=0.05, n_samples=7, batch_size=5,
                                  normalize=normalize)
        got = metric.score(bb, sal, x, t, attributions=raw, seeds=[10, 11])
        want = [naive_infidelity(bb, x[i], t[i], raw[i].astype(np.float64), metric, 10 + i)
                for i in range(2)]
        # F(x) − F(x − I) cancels: float32 logits that differ in the last bit between batch
        # compositions (TF's CPU kernels block by batch size) move the score by ~1e-4 relative
        np.testing.assert_allclose(got, want, rtol=1e-3)
    assert np.all(got > 0)


def test_infidelity_broadcasts_an_hw_map_over_channels():
    bb = small_cnn()
    x = images(2, seed=2)
    t = np.array([0, 1])
    rng = np.random.default_rng(0)
    phi_hw = rng.normal(size=(2, SIZE, SIZE)).astype(np.float32)
    metric = tfxai.get_metric("infidelity", n_samples=5)
    a = metric.score(bb, None, x, t, attributions=phi_hw)
    b = metric.score(bb, None, x, t, attributions=np.repeat(phi_hw[..., None], 3, axis=-1))
    np.testing.assert_allclose(a, b, rtol=1e-10)


def test_infidelity_normalize_is_scale_invariant():
    bb = small_cnn()
    x = images(2, seed=3)
    t = np.array([0, 2])
    grad = tfxai.get_attributer("saliency", bb).attribute(x, t).astype(np.float64)
    # a gradient spoiled by noise (float64, so that ×10 is exact up to 1e-16)
    raw = grad + np.random.default_rng(0).normal(0, grad.std(), grad.shape)
    norm = tfxai.get_metric("infidelity", normalize=True, n_samples=10, sigma=0.03)
    plain = tfxai.get_metric("infidelity", normalize=False, n_samples=10, sigma=0.03)
    a = norm.score(bb, None, x, t, attributions=raw)
    b = norm.score(bb, None, x, t, attributions=raw * 10.0)
    np.testing.assert_allclose(a, b, rtol=1e-9)
    # without normalisation the scale matters, and the optimal β never does worse
    p1 = plain.score(bb, None, x, t, attributions=raw)
    p10 = plain.score(bb, None, x, t, attributions=raw * 10.0)
    assert np.all(np.abs(p10 - p1) > 1e-3 * np.abs(p1))
    assert np.all(a <= p1 + 1e-12)


def test_infidelity_is_seeded_and_independent_of_batching():
    bb = small_cnn()
    x = images(3, seed=4)
    t = np.array([0, 1, 2])
    raw = tfxai.get_attributer("saliency", bb).attribute(x, t)
    m = tfxai.get_metric("infidelity", n_samples=4, sigma=0.02)
    full = m.score(bb, None, x, t, attributions=raw, seeds=[5, 6, 7])
    again = tfxai.get_metric("infidelity", n_samples=4, sigma=0.02, batch_size=3).score(
        bb, None, x, t, attributions=raw, seeds=[5, 6, 7])
    part = m.score(bb, None, x[1:], t[1:], attributions=raw[1:], seeds=[6, 7])
    # the same perturbations whatever the batching; the values agree up to float32 round-off in
    # the cancelling difference F(x) − F(x − I) (logits are not bit-identical across batch sizes)
    np.testing.assert_allclose(full, again, rtol=2e-3)
    np.testing.assert_allclose(full[1:], part, rtol=2e-3)
    np.testing.assert_array_equal(m.score(bb, None, x, t, attributions=raw, seeds=[5, 6, 7]), full)
    other = m.score(bb, None, x, t, attributions=raw, seeds=[8, 9, 10])
    assert not np.allclose(full, other, rtol=0.05)


def test_infidelity_nan_prediction_gives_nan_row_with_note():
    # F = Σ sqrt(x): finite on x ≥ 0; an image with zero pixels turns NaN when x − I < 0
    bb = lambda_model(lambda x: tf.reduce_sum(tf.sqrt(x), axis=(1, 2, 3)))
    x = np.full((2, SIZE, SIZE, 3), 100.0, np.float32)
    x[1, :4] = 0.0
    phi = np.ones_like(x)
    out = tfxai.get_metric("infidelity", n_samples=5).evaluate(
        bb, None, x, np.array([0, 0]), attributions=phi)
    assert np.isfinite(out.values[""][0]) and out.notes[""][0] == ""
    assert np.isnan(out.values[""][1])
    assert "non-finite prediction" in out.notes[""][1]


def test_infidelity_bad_parameters():
    with pytest.raises(ValueError, match="sigma"):
        tfxai.get_metric("infidelity", sigma=-1.0)
    with pytest.raises(ValueError, match="n_samples"):
        tfxai.get_metric("infidelity", n_samples=0)


# --------------------------------------------------------------------------------------- ROAD


def test_imputation_of_a_pixel_surrounded_by_a_constant():
    c = 123.0
    img = np.full((7, 9, 3), c, np.float32)
    img[3, 4] = 0.0
    removed = np.zeros((7, 9), bool)
    removed[3, 4] = True
    exact = noisy_linear_impute(img, removed, noise_std=0.0)
    np.testing.assert_allclose(exact, np.full_like(img, c), atol=1e-3)
    noisy = noisy_linear_impute(img, removed, noise_std=0.01, seed=3)
    assert np.all(np.abs(noisy[3, 4] - c) < 5 * 0.01 * 255)  # c up to the noise (σ = 2.55)
    assert not np.allclose(noisy[3, 4], c)
    keep = ~removed
    np.testing.assert_array_equal(noisy[keep], img[keep])  # known pixels untouched


def test_imputation_reproduces_a_linear_ramp_and_a_block():
    h, w = 20, 24
    yy, xx = np.mgrid[0:h, 0:w]
    ramp = np.stack([3.0 * xx + 2.0 * yy, 5.0 * yy, 100 + 0 * xx], -1).astype(np.float32)
    removed = np.zeros((h, w), bool)
    removed[5:14, 6:17] = True  # a 9×11 interior block: the weighted mean is exact for linear images
    out = noisy_linear_impute(np.where(removed[..., None], 0, ramp), removed, noise_std=0.0)
    np.testing.assert_allclose(out, ramp, atol=1e-2)


def test_imputation_rejects_removing_everything():
    with pytest.raises(ValueError, match="at least one pixel"):
        noisy_linear_impute(np.zeros((4, 4, 3)), np.ones((4, 4), bool))


def test_curve_auc_is_the_mean_height():
    np.testing.assert_allclose(curve_auc(np.array([0.1, 0.5, 0.9]), np.array([0.3, 0.3, 0.3])), 0.3)
    np.testing.assert_allclose(curve_auc(np.array([0.0, 1.0]), np.array([0.0, 1.0])), 0.5)


def _patch_model(k: float = 0.05, b: float = 6.0):
    """logit0 = k·mean(patch) − b where the patch is rows 0..1, columns 0..3 (8 pixels)."""
    return lambda_model(lambda x: k * tf.reduce_mean(x[:, 0:2, 0:4, :], axis=(1, 2, 3)) - b)


def _bright_patch_image() -> np.ndarray:
    x = np.full((1, SIZE, SIZE, 3), 20.0, np.float32)
    x[0, 0:2, 0:4] = 250.0
    return x


def test_road_morf_below_lerf_and_curves_stored():
    bb = _patch_model()
    x = _bright_patch_image()
    phi = np.zeros((1, SIZE, SIZE), np.float32)
    phi[0, 0:2, 0:4] = 1.0  # the true relevance
    out = tfxai.get_metric("road").evaluate(bb, None, x, np.array([0]), attributions=phi)
    morf, lerf = out.values["morf"][0], out.values["lerf"][0]
    p0 = 1 / (1 + np.exp(-(0.05 * 250 - 6)))
    assert morf < 0.1 < p0 - 0.1 < lerf  # MoRF drops at once, LeRF keeps the patch to 80 %
    curve = np.array(out.extras["morf"][0])
    np.testing.assert_array_equal(curve[:, 0], np.arange(10, 100, 10))
    np.testing.assert_allclose(morf, curve_auc(curve[:, 0] / 100, curve[:, 1]))
    lerf_curve = np.array(out.extras["lerf"][0])
    assert np.all(lerf_curve[:8, 1] > p0 - 0.05)  # patch (12.5 %) kept while ≤ 87.5 % removed


def test_road_constant_model_area_equals_probability_and_accuracy_measure():
    bb = lambda_model(lambda x: 0.0 * tf.reduce_sum(x, axis=(1, 2, 3)) + 1.0)
    x = images(2)
    phi = np.random.default_rng(0).normal(size=(2, SIZE, SIZE)).astype(np.float32)
    out = tfxai.get_metric("road", percentages=[20, 50]).evaluate(
        bb, None, x, np.array([0, 1]), attributions=phi)
    p = 1 / (1 + np.exp(-1.0))
    np.testing.assert_allclose(out.values["morf"], [p, 1 - p], rtol=1e-5)
    np.testing.assert_allclose(out.values["lerf"], [p, 1 - p], rtol=1e-5)
    acc = tfxai.get_metric("road", percentages=[20, 50], measure="accuracy").score(
        bb, None, x, np.array([0, 1]), attributions=phi, variant="morf")
    np.testing.assert_array_equal(acc, [1.0, 0.0])


def test_road_threaded_solves_equal_serial_and_are_seeded():
    """The imputation solves run in a thread pool: same curves for 1 and 3 threads and per seed."""
    bb = _patch_model()
    x = np.concatenate([_bright_patch_image(), images(2)])
    phi = np.random.default_rng(1).normal(size=(3, SIZE, SIZE)).astype(np.float32)
    t = np.array([0, 0, 0])
    runs = [tfxai.get_metric("road", percentages=[30, 60, 90], threads=n).evaluate(
        bb, None, x, t, attributions=phi, seeds=np.array([5, 6, 7])) for n in (1, 3, 3)]
    for variant in ("morf", "lerf"):
        np.testing.assert_array_equal(runs[0].values[variant], runs[1].values[variant])
        assert runs[1].extras[variant] == runs[2].extras[variant]
    other = tfxai.get_metric("road", percentages=[30, 60, 90]).evaluate(
        bb, None, x, t, attributions=phi, seeds=np.array([8, 9, 10]))
    assert other.extras["morf"] != runs[0].extras["morf"]  # the imputation noise follows the seed


def test_imputation_solver_matches_a_dense_solve():
    """The symmetric-mode SuperLU solve equals a dense solve of the same system (noise off)."""
    from tfxai.evaluation.road import _imputation_system

    rng = np.random.default_rng(4)
    img = rng.uniform(0, 255, (12, 13, 3))
    removed = rng.random((12, 13)) < 0.6
    removed[0, 0] = False
    a, c, idx = _imputation_system(removed)
    dense = np.linalg.solve(a.toarray(), c.toarray() @ img.reshape(-1, 3))
    out = noisy_linear_impute(img, removed, noise_std=0.0)
    np.testing.assert_allclose(out.reshape(-1, 3)[idx], dense, atol=1e-3)


# --------------------------------------------------------------------------------------- deletion / insertion


def _sigmoid(z: float) -> float:
    return float(1 / (1 + np.exp(-z)))


def test_deletion_and_insertion_closed_form():
    k, b = 0.05, 6.0
    bb = _patch_model(k, b)
    x = _bright_patch_image()
    phi = np.zeros((1, SIZE, SIZE), np.float32)
    phi[0, 0:2, 0:4] = 1.0
    # 8 steps of 8 pixels: the 8 patch pixels go first
    dele = tfxai.get_metric("deletion", steps=8).evaluate(bb, None, x, [0], attributions=phi)
    p0, pb = _sigmoid(k * 250 - b), _sigmoid(-b)
    want = ((p0 + pb) / 2 * 1 + pb * 7) / 8
    np.testing.assert_allclose(dele.values[""][0], want, rtol=1e-5)
    curve = np.array(dele.extras[""][0])
    np.testing.assert_allclose(curve[:, 0], np.linspace(0, 100, 9))
    np.testing.assert_allclose(curve[0, 1], p0, rtol=1e-5)

    ins = tfxai.get_metric("insertion", steps=8, blur_sigma=2.0).evaluate(
        bb, None, x, [0], attributions=phi)
    blurred = ndimage.gaussian_filter(x, sigma=(0, 2.0, 2.0, 0))
    p_blur = _sigmoid(k * blurred[0, 0:2, 0:4].mean() - b)
    want = ((p_blur + p0) / 2 * 1 + p0 * 7) / 8
    np.testing.assert_allclose(ins.values[""][0], want, rtol=1e-4)
    assert ins.values[""][0] > dele.values[""][0]


def test_deletion_prefers_the_true_map_over_its_reverse():
    bb = _patch_model()
    x = _bright_patch_image()
    good = np.zeros((1, SIZE, SIZE), np.float32)
    good[0, 0:2, 0:4] = 1.0
    m = tfxai.get_metric("deletion", steps=8)
    assert m.score(bb, None, x, [0], attributions=good)[0] < m.score(
        bb, None, x, [0], attributions=-good)[0]


def test_nan_prediction_on_perturbed_images_gives_nan_rows_with_notes():
    # F = Σ sqrt(x − 10): finite on the images (all ≥ 100), NaN once a pixel is set to 0
    bb = lambda_model(lambda x: 1e-3 * tf.reduce_sum(tf.sqrt(x - 10.0), axis=(1, 2, 3)))
    x = np.full((1, SIZE, SIZE, 3), 100.0, np.float32)
    phi = np.random.default_rng(0).normal(size=(1, SIZE, SIZE)).astype(np.float32)
    out = tfxai.get_metric("deletion", steps=4).evaluate(bb, None, x, [0], attributions=phi)
    assert np.isnan(out.values[""][0]) and "non-finite prediction" in out.notes[""][0]
    ins = tfxai.get_metric("insertion", steps=4).evaluate(bb, None, x, [0], attributions=phi)
    assert np.isfinite(ins.values[""][0]) and ins.notes[""][0] == ""  # the blur stays ≥ 10
