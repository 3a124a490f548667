"""Integrated gradients and gradient SHAP: completeness, baselines, chunking, shap."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from _tiny_models import backbone, corr, images, small_cnn, zoo_cnn
from PIL import Image

import tfxai
from tfxai.attribution.integrated import (
    IntegratedGradients,
    gauss_legendre,
    ig_path,
    make_baseline,
)
from tfxai.backend import keras

L = keras.layers


def _linear():
    keras.utils.set_random_seed(5)
    inp = L.Input((8, 8, 3))
    model = keras.Model(inp, L.Dense(3)(L.Flatten()(inp)))
    return model, model.layers[-1].get_weights()[0]


def _completeness_error(bb, att, x, t):
    seeds = tf.constant(att.resolve_seeds(len(x), None))
    x0 = att.baseline(tf.constant(x), seeds).numpy()
    idx = np.arange(len(x))
    delta = bb.predict_logits(x)[idx, t] - bb.predict_logits(x0)[idx, t]
    total = att.attribute(x, t).reshape(len(x), -1).sum(axis=1)
    return np.abs(total - delta) / np.abs(delta), delta


@pytest.mark.parametrize("rule", ["riemann_right", "trapezoid"])
def test_completeness_256_steps(rule):
    """|Σ IG − (F(x) − F(x'))| < 1% of |F(x) − F(x')| at 256 steps (black baseline)."""
    bb = backbone(small_cnn())
    x = images(4)
    t = np.array([0, 1, 2, 3])
    att = tfxai.get_attributer("integrated_gradients", bb, steps=256, rule=rule,
                               internal_batch_size=128)
    err, delta = _completeness_error(bb, att, x, t)
    assert np.all(np.abs(delta) > 1e-3)
    assert np.all(err < 0.01), err


@pytest.mark.parametrize("baseline", ["uniform", "gaussian", "blur", "max_distance"])
def test_completeness_other_baselines(baseline):
    bb = backbone(small_cnn())
    x = images(4)
    t = np.array([0, 1, 2, 3])
    att = tfxai.get_attributer("integrated_gradients", bb, steps=256, baseline=baseline,
                               rule="trapezoid", internal_batch_size=128)
    err, delta = _completeness_error(bb, att, x, t)
    big = np.abs(delta) > 0.02  # relative error is meaningless where F(x) ≈ F(x')
    assert big.sum() >= 2
    assert np.all(err[big] < 0.02), err


def test_linear_model_exact():
    model, w = _linear()
    bb = backbone(model)
    x = images(2, size=8)
    for baseline in ("black", "max_distance"):
        att = tfxai.get_attributer("integrated_gradients", bb, steps=3, baseline=baseline)
        x0 = att.baseline(tf.constant(x), tf.constant([0, 1], tf.int64)).numpy()
        raw = att.attribute(x, [1, 2])
        for i, t in enumerate([1, 2]):
            np.testing.assert_allclose(raw[i].ravel(), (x[i] - x0[i]).ravel() * w[:, t],
                                       rtol=1e-4, atol=1e-6)


def test_path_rules():
    a, w = ig_path(4, "riemann_right")
    np.testing.assert_allclose(a, [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(w, [0.25] * 4)
    a, w = ig_path(4, "trapezoid")
    np.testing.assert_allclose(a, [0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(w, [0.125, 0.25, 0.25, 0.25, 0.125])


def test_baselines():
    x = tf.constant(images(2, size=16))
    seeds = tf.constant([3, 4], tf.int64)
    np.testing.assert_array_equal(make_baseline(x, "black", seeds), 0.0)
    md = make_baseline(x, "max_distance", seeds).numpy()
    np.testing.assert_array_equal(md, np.where(x.numpy() < 127.5, 255.0, 0.0))
    u = make_baseline(x, "uniform", seeds).numpy()
    assert 0 <= u.min() and u.max() <= 255 and abs(u.mean() - 127.5) < 10
    g = make_baseline(x, "gaussian", seeds).numpy()
    assert 0 <= g.min() and g.max() <= 255
    assert 0.3 * 255 < np.std(g - x.numpy()) < 0.5 * 255  # σ = 0.5, shrunk by clipping
    # seeded per image: image 1 alone gets the same draw as in the batch
    u1 = make_baseline(x[1:], "uniform", seeds[1:]).numpy()
    np.testing.assert_array_equal(u1[0], u[1])
    assert not np.allclose(u[0], u[1])
    b = make_baseline(x, "blur", seeds).numpy()
    assert b.std() < x.numpy().std()


class _CountingIG(IntegratedGradients):
    """Records the largest batch the model sees inside the compiled loop."""

    def _setup(self):
        self.max_rows = tf.Variable(0, dtype=tf.int32)
        super()._setup()

    def _logits(self, x):
        self.max_rows.assign(tf.maximum(self.max_rows, tf.shape(x)[0]))
        return super()._logits(x)


def test_memory_is_chunked_and_result_independent_of_chunks():
    bb = backbone(zoo_cnn(), output="probabilities")
    x = images(3)
    t = np.array([0, 1, 2])
    small = _CountingIG(bb, steps=256, internal_batch_size=8)
    a = small.attribute(x, t)
    assert small.max_rows.numpy() == 8  # never 256 (or 3·256) images at once
    b = tfxai.get_attributer("integrated_gradients", bb, steps=256, internal_batch_size=100,
                             batch_size=1).attribute(x, t)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6 * np.abs(a).max())
    assert small._fn.experimental_get_tracing_count() == 1


def _while_loops(fn: tf.types.experimental.ConcreteFunction) -> list[int]:
    """``parallel_iterations`` of every while loop in a traced function and its sub-graphs."""
    graphs, seen, out = [fn.graph], set(), []
    while graphs:
        g = graphs.pop()
        for op in g.get_operations():
            if op.type in ("While", "StatelessWhile"):
                out.append(op.get_attr("parallel_iterations"))
        for name in getattr(g, "_functions", {}):
            if name not in seen:
                seen.add(name)
                graphs.append(g._functions[name].graph)
    return out


def test_at_most_two_chunks_in_flight():
    """The chunk loops run at most two chunks at once. tf.while_loop's default (10 iterations
    in parallel) kept up to 10 chunks' activations alive: IG on 16 EfficientNet-Lite2 images
    took 15 GB instead of 3."""
    bb = backbone(zoo_cnn(), output="probabilities")
    ig = tfxai.get_attributer("integrated_gradients", bb, steps=16, internal_batch_size=4)
    ig.attribute(images(2), [0, 1])
    loops = _while_loops(ig._fn.get_concrete_function())
    assert loops and all(p <= 2 for p in loops), loops
    adaptive = tfxai.get_attributer("integrated_gradients", bb, rule="adaptive", steps=16,
                                    internal_batch_size=4)
    adaptive.attribute(images(2), [0, 1])
    loops = _while_loops(adaptive._round_fn.get_concrete_function())
    assert len(loops) == 2 and all(p <= 2 for p in loops), loops


def test_seeded_baselines_batch_independent():
    bb = backbone(small_cnn())
    x = images(3)
    t = np.array([0, 1, 2])
    kw = dict(steps=8, baseline="gaussian")
    a = tfxai.get_attributer("integrated_gradients", bb, **kw).attribute(x, t)
    b = tfxai.get_attributer("integrated_gradients", bb, batch_size=1, **kw).attribute(x, t)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-8)
    c = tfxai.get_attributer("integrated_gradients", bb, seed=1, **kw).attribute(x, t)
    assert not np.allclose(a, c)


def test_bad_params():
    bb = backbone(small_cnn())
    with pytest.raises(ValueError, match="baseline"):
        tfxai.get_attributer("integrated_gradients", bb, baseline="white")
    with pytest.raises(ValueError, match="steps"):
        tfxai.get_attributer("integrated_gradients", bb, steps=0)
    with pytest.raises(ValueError, match="rule"):
        tfxai.get_attributer("integrated_gradients", bb, rule="simpson")


# ----------------------------------------------------------------------------- gradient SHAP


def test_gradient_shap_linear_exact():
    """For F = w·x every draw gives (x − b)·w: the mean over the background is exact."""
    model, w = _linear()
    bb = backbone(model)
    x = images(2, size=8)
    bg = images(3, size=8, seed=9)
    raw = tfxai.get_attributer("gradient_shap", bb, background=bg, n_samples=2).attribute(x, [0, 2])
    for i, t in enumerate([0, 2]):
        expect = (x[i] - bg.mean(axis=0)).ravel() * w[:, t]
        np.testing.assert_allclose(raw[i].ravel(), expect, rtol=1e-4, atol=1e-5)


def test_gradient_shap_agrees_with_shap_gradient_explainer():
    """In expectation: the same estimator as shap's GradientExplainer (corr > 0.9 at a high
    sample count)."""
    shap = pytest.importorskip("shap")
    model = small_cnn()
    bb = backbone(model)
    x = images(2)
    t = np.array([1, 3])
    bg = images(4, seed=7)
    ours = tfxai.get_attributer("gradient_shap", bb, background=bg, n_samples=300,
                                internal_batch_size=200).attribute(x, t)
    explainer = shap.GradientExplainer(model, bg)
    sv = np.asarray(explainer.shap_values(x, nsamples=1200, rseed=0))
    ref = np.stack([sv[i, ..., t[i]] for i in range(len(x))])
    for i in range(len(x)):
        assert corr(ours[i], ref[i]) > 0.9


def test_gradient_shap_noise_seeded_and_batch_independent():
    bb = backbone(small_cnn())
    x = images(3)
    t = np.array([0, 1, 2])
    bg = images(2, seed=8)
    kw = dict(background=bg, n_samples=4, sigma=0.1)
    a = tfxai.get_attributer("gradient_shap", bb, **kw).attribute(x, t)
    b = tfxai.get_attributer("gradient_shap", bb, batch_size=1, internal_batch_size=3,
                             **kw).attribute(x, t)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-8)
    c = tfxai.get_attributer("gradient_shap", bb, background=bg, n_samples=4).attribute(x, t)
    assert not np.allclose(a, c)


def test_gradient_shap_background_folder_and_errors(tmp_path):
    bb = backbone(small_cnn())
    bg = images(3, seed=2)
    folder = tmp_path / "bg"
    folder.mkdir()
    for i, img in enumerate(bg):
        Image.fromarray(img.astype(np.uint8)).save(folder / f"b{i}.png")
    att = tfxai.get_attributer("gradient_shap", bb, background=str(folder), background_size=2)
    assert att.background.shape == (2, 16, 16, 3)
    np.testing.assert_allclose(att.background, bg[:2].astype(np.uint8), atol=1)
    assert att.method_params()["background"] == str(folder.resolve())
    arr = tfxai.get_attributer("gradient_shap", bb, background=bg)
    assert arr.method_params()["background"].startswith("array[3, 16, 16, 3]:")
    default = tfxai.get_attributer("gradient_shap", bb)  # synthetic colour fields, as shap's
    assert default.background.shape == (10, 16, 16, 3)
    assert default.method_params()["background"] == "synthetic"
    assert default.method_params()["background_size"] == 10
    np.testing.assert_array_equal(default.background,
                                  tfxai.get_attributer("gradient_shap", bb).background)
    with pytest.raises(ValueError, match="does not exist"):
        tfxai.get_attributer("gradient_shap", bb, background=str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="background"):
        tfxai.get_attributer("gradient_shap", bb, background=str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="shape"):
        tfxai.get_attributer("gradient_shap", bb, background=np.zeros((2, 8, 8, 3)))


# ----------------------------------------------------------------------------- quadrature rules
# Gauss–Legendre on [0, 1]: closed forms of the 3- and 5-point rules (mapped from [−1, 1]).
_GL3 = ([0.5 - 0.1 * 15**0.5, 0.5, 0.5 + 0.1 * 15**0.5], [5 / 18, 8 / 18, 5 / 18])
_GL5 = (
    [0.0469100770306680, 0.2307653449471585, 0.5, 0.7692346550528415, 0.9530899229693320],
    [0.1184634425280945, 0.2393143352496832, 0.2844444444444444, 0.2393143352496832,
     0.1184634425280945],
)


def test_gauss_legendre_table():
    for n, (nodes, weights) in ((3, _GL3), (5, _GL5)):
        a, w = gauss_legendre(n)
        np.testing.assert_allclose(a, nodes, atol=1e-12)
        np.testing.assert_allclose(w, weights, atol=1e-12)
        a32, w32 = ig_path(n, "gauss_legendre")
        assert a32.dtype == np.float32 and len(a32) == n
        np.testing.assert_allclose(a32, nodes, atol=1e-7)
        np.testing.assert_allclose(w32, weights, atol=1e-7)
    a, w = gauss_legendre(1)
    np.testing.assert_allclose([a[0], w[0]], [0.5, 1.0])
    with pytest.raises(ValueError, match="adaptive"):
        ig_path(8, "adaptive")


class _Poly(L.Layer):
    """logit_c = Σ_j c_j s^j with s = u·x/255 + b: a polynomial of degree d along any straight
    path, so the IG path integrand g(α) has degree d − 1."""

    def __init__(self, coef, **kw):
        super().__init__(**kw)
        self.coef = [float(c) for c in coef]

    def build(self, shape):
        rng = np.random.default_rng(4)
        n = int(np.prod(shape[1:]))
        u = rng.uniform(0.5, 1.5, n) / n * 4  # s runs from −0.3 to ≈ 1.7 along the path
        self.u = self.add_weight(shape=(n,), trainable=False,
                                 initializer=keras.initializers.Constant(u))
        self.b = self.add_weight(shape=(), trainable=False,
                                 initializer=keras.initializers.Constant(-0.3))

    def call(self, x):
        s = keras.ops.sum(keras.ops.reshape(x, (keras.ops.shape(x)[0], -1)) / 255.0 * self.u,
                          axis=1) + self.b
        out = sum(c * s**j for j, c in enumerate(self.coef))
        return keras.ops.stack([out, -out], axis=1)


def _poly_backbone(degree):
    inp = L.Input((8, 8, 3))
    coef = np.random.default_rng(degree).uniform(0.5, 1.5, degree + 1)
    return backbone(keras.Model(inp, _Poly(coef)(inp))), coef


def _poly_exact(bb, x, t):
    """IG of the polynomial model from the black baseline: g(α) = u_i·x_i/255 · P'(s(α)), so
    IG_i = u_i·x_i/255 · (P(s(1)) − P(s(0)))/(s(1) − s(0))."""
    layer = bb.keras_model.layers[-1]
    u = layer.u.numpy().reshape(8, 8, 3)
    b = float(layer.b.numpy())
    out = []
    for i in range(len(x)):
        s1 = float(np.sum(u * x[i] / 255.0)) + b
        p = [np.polyval(np.asarray(layer.coef[::-1]), s) for s in (b, s1)]
        sign = 1.0 if t[i] == 0 else -1.0
        out.append(sign * u * x[i] / 255.0 * (p[1] - p[0]) / (s1 - b))
    return np.stack(out)


@pytest.mark.parametrize("n", [2, 3, 4])
def test_gauss_legendre_exact_for_degree_2n_minus_1(n):
    """n-point Gauss–Legendre integrates g of degree 2n − 1 exactly (model degree 2n), not
    degree 2n (model degree 2n + 1); the same n right-Riemann steps are far off."""
    x = images(2, size=8)
    t = np.array([0, 1])
    bb, _ = _poly_backbone(2 * n)
    exact = _poly_exact(bb, x, t)
    scale = np.abs(exact).max()
    gl = tfxai.get_attributer("integrated_gradients", bb, steps=n, rule="gauss_legendre")
    np.testing.assert_allclose(gl.attribute(x, t), exact, atol=3e-6 * scale, rtol=0)  # float32
    rr = tfxai.get_attributer("integrated_gradients", bb, steps=n).attribute(x, t)
    assert np.abs(rr - exact).max() > 1e-2 * scale
    bb_hi, _ = _poly_backbone(2 * n + 1)
    exact_hi = _poly_exact(bb_hi, x, t)
    gl_hi = tfxai.get_attributer("integrated_gradients", bb_hi, steps=n,
                                 rule="gauss_legendre").attribute(x, t)
    assert np.abs(gl_hi - exact_hi).max() > 1e-4 * np.abs(exact_hi).max()


def _steep():
    """A smooth model whose logit along the path from black rises steeply around one α (a
    sigmoid ramp), as a trained network does: hard for a uniform grid."""
    keras.utils.set_random_seed(11)
    inp = L.Input((8, 8, 3))
    s = L.Dense(1, kernel_initializer=keras.initializers.Constant(1 / (8 * 8 * 3 * 25.0)),
                bias_initializer=keras.initializers.Constant(-0.4))(L.Flatten()(inp))
    ramp = L.Activation("sigmoid")(L.Rescaling(30.0)(s))  # rises around α ≈ 0.08
    wig = L.Dense(3, activation="tanh")(L.Flatten()(L.Rescaling(1 / 255.0)(inp)))
    out = L.Concatenate()([L.Rescaling(8.0)(ramp), wig])
    return backbone(keras.Model(inp, L.Dense(3)(out)))


def test_adaptive_reaches_tolerance_with_fewer_evaluations():
    bb = _steep()
    x = images(4, size=8, seed=3)
    t = np.array([0, 1, 2, 0])
    for tol in (0.01, 0.001):
        att = tfxai.get_attributer("integrated_gradients", bb, rule="adaptive", steps=256,
                                   tolerance=tol, internal_batch_size=8)
        err, delta = _completeness_error(bb, att, x, t)
        d = att.last_diagnostics
        assert np.all(np.abs(delta) > 0.1)
        assert np.all(err <= tol), (tol, err)
        np.testing.assert_allclose(d["completeness_error"], err, rtol=1e-2, atol=1e-6)
        assert np.all(d["gradient_evaluations"] < 256), d  # smooth: stops well before the budget
        assert np.all(d["gradient_evaluations"] % 2 == 1)  # 1 + 2 per split
        np.testing.assert_array_equal(d["forward_passes"], 2)  # F(x') and F(x) only
        # a uniform grid with as many gradients misses the tolerance
        m = int(d["gradient_evaluations"].max())
        rr = tfxai.get_attributer("integrated_gradients", bb, steps=m)
        err_rr, _ = _completeness_error(bb, rr, x, t)
        assert err_rr.max() > tol, (m, err_rr)
    assert att._round_fn.experimental_get_tracing_count() == 1  # one trace for every round


def test_adaptive_respects_budget():
    bb = _steep()
    x = images(3, size=8, seed=3)
    att = tfxai.get_attributer("integrated_gradients", bb, rule="adaptive", steps=26,
                               tolerance=1e-6)
    att.attribute(x, [0, 1, 2])
    g = att.last_diagnostics["gradient_evaluations"]
    np.testing.assert_array_equal(g, 25)  # 1 + 2·12; a 13th split would need 27
    assert np.all(att.last_diagnostics["completeness_error"] > 1e-6)


@pytest.mark.parametrize("rule", ["gauss_legendre", "adaptive"])
def test_properties_hold_for_new_rules(rule):
    """Completeness at a high budget, exactness on a linear model, seeded baselines."""
    bb = backbone(small_cnn())
    x = images(4)
    t = np.array([0, 1, 2, 3])
    kw = {"tolerance": 0.001} if rule == "adaptive" else {}
    att = tfxai.get_attributer("integrated_gradients", bb, steps=64, rule=rule,
                               internal_batch_size=64, **kw)
    err, delta = _completeness_error(bb, att, x, t)
    assert np.all(err < 0.01), err
    model, w = _linear()
    lin = backbone(model)
    x8 = images(2, size=8)
    for baseline in ("black", "max_distance"):
        a = tfxai.get_attributer("integrated_gradients", lin, steps=8, baseline=baseline,
                                 rule=rule)
        x0 = a.baseline(tf.constant(x8), tf.constant([0, 1], tf.int64)).numpy()
        raw = a.attribute(x8, [1, 2])
        for i, c in enumerate([1, 2]):
            np.testing.assert_allclose(raw[i].ravel(), (x8[i] - x0[i]).ravel() * w[:, c],
                                       rtol=1e-4, atol=1e-5)
    kw.update(steps=36, baseline="gaussian")
    a = tfxai.get_attributer("integrated_gradients", bb, rule=rule, **kw).attribute(x, t)
    b = tfxai.get_attributer("integrated_gradients", bb, rule=rule, batch_size=1,
                             **kw).attribute(x, t)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6 * np.abs(a).max())
    c = tfxai.get_attributer("integrated_gradients", bb, rule=rule, seed=1, **kw).attribute(x, t)
    assert not np.allclose(a, c)


def test_adaptive_memory_is_chunked():
    bb = backbone(zoo_cnn(), output="probabilities")
    x = images(3)
    t = np.array([0, 1, 2])
    small = _CountingIG(bb, steps=60, rule="adaptive", tolerance=1e-4, internal_batch_size=5)
    a = small.attribute(x, t)
    assert small.max_rows.numpy() == 5
    big = tfxai.get_attributer("integrated_gradients", bb, steps=60, rule="adaptive",
                               tolerance=1e-4, internal_batch_size=64)
    np.testing.assert_allclose(a, big.attribute(x, t), rtol=1e-4, atol=1e-5 * np.abs(a).max())
    np.testing.assert_array_equal(small.last_diagnostics["gradient_evaluations"],
                                  big.last_diagnostics["gradient_evaluations"])


def test_rule_params_recorded_and_validated():
    bb = backbone(small_cnn())
    p = tfxai.get_attributer("integrated_gradients", bb, rule="adaptive", tolerance=0.05,
                             steps=40).method_params()
    assert p["rule"] == "adaptive" and p["tolerance"] == 0.05 and p["steps"] == 40
    p = tfxai.get_attributer("integrated_gradients", bb, rule="gauss_legendre").method_params()
    assert p["rule"] == "gauss_legendre" and "tolerance" not in p
    assert "tolerance" not in tfxai.get_attributer("integrated_gradients", bb).method_params()
    with pytest.raises(ValueError, match="tolerance"):
        tfxai.get_attributer("integrated_gradients", bb, rule="adaptive", tolerance=0.0)
    with pytest.raises(ValueError, match="tolerance"):
        tfxai.get_attributer("integrated_gradients", bb, rule="adaptive", tolerance=1.5)
    with pytest.raises(ValueError, match="'tolerance' applies only to rule='adaptive'"):
        tfxai.get_attributer("integrated_gradients", bb, tolerance=0.01)
    with pytest.raises(ValueError, match="steps"):
        tfxai.get_attributer("integrated_gradients", bb, rule="adaptive", steps=0)
    d = tfxai.get_attributer("integrated_gradients", bb, steps=7, rule="gauss_legendre")
    d.attribute(images(2), [0, 1])
    np.testing.assert_array_equal(d.last_diagnostics["gradient_evaluations"], [7, 7])
    assert np.isnan(d.last_diagnostics["completeness_error"]).all()


# ----------------------------------------------------------------------------- gradient SHAP α


@pytest.mark.parametrize("scheme", ["stratified", "gauss_legendre"])
def test_gradient_shap_alpha_sampling(scheme):
    model, w = _linear()
    lin = backbone(model)
    x8 = images(2, size=8)
    bg8 = images(3, size=8, seed=9)
    raw = tfxai.get_attributer("gradient_shap", lin, background=bg8, n_samples=3,
                               alpha_sampling=scheme).attribute(x8, [0, 2])
    for i, c in enumerate([0, 2]):
        np.testing.assert_allclose(raw[i].ravel(), (x8[i] - bg8.mean(axis=0)).ravel() * w[:, c],
                                   rtol=1e-4, atol=1e-5)
    bb = _steep()
    x = images(3, size=8, seed=3)
    t = np.array([0, 1, 2])
    bg = images(2, size=8, seed=8)
    kw = dict(background=bg, n_samples=6, alpha_sampling=scheme)
    a = tfxai.get_attributer("gradient_shap", bb, **kw).attribute(x, t)
    b = tfxai.get_attributer("gradient_shap", bb, batch_size=1, internal_batch_size=5,
                             **kw).attribute(x, t)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6 * np.abs(a).max())
    c = tfxai.get_attributer("gradient_shap", bb, seed=3, **kw).attribute(x, t)
    if scheme == "gauss_legendre":  # no random draw left without noise
        np.testing.assert_allclose(a, c, rtol=1e-5, atol=1e-7)
    else:
        assert not np.allclose(a, c)
    assert tfxai.get_attributer("gradient_shap", bb, **kw).method_params()[
        "alpha_sampling"] == scheme


def test_gradient_shap_alpha_sampling_reduces_completeness_error():
    """Σ φ − (F(x) − mean_b F(b)) comes only from the α integration: stratified α and
    Gauss–Legendre in α shrink it against i.i.d. α at the same number of gradients."""
    bb = _steep()
    x = images(4, size=8, seed=3)
    t = np.array([0, 1, 2, 0])
    bg = images(2, size=8, seed=8)
    idx = np.arange(len(x))
    target = bb.predict_logits(x)[idx, t] - bb.predict_logits(bg)[:, t].mean(axis=0)

    def error(scheme, seed):
        raw = tfxai.get_attributer("gradient_shap", bb, background=bg, n_samples=8,
                                   alpha_sampling=scheme, seed=seed).attribute(x, t)
        return np.abs(raw.reshape(len(x), -1).sum(axis=1) - target) / np.abs(target)

    uniform = np.mean([error("uniform", s) for s in range(4)])
    stratified = np.mean([error("stratified", s) for s in range(4)])
    gl = np.mean(error("gauss_legendre", 0))
    assert stratified < uniform / 3, (uniform, stratified)
    assert gl < uniform / 3, (uniform, gl)
    with pytest.raises(ValueError, match="alpha_sampling"):
        tfxai.get_attributer("gradient_shap", bb, background=bg, alpha_sampling="sobol")
