"""The ``adaptive`` quadrature rule of integrated gradients [Sundararajan, Taly & Yan 2017]: bisect
the path where a segment's own completeness residual is largest (see
:class:`tfxai.attribution.integrated.IntegratedGradients` for the rule and its limits).

- :func:`compile_round`: one refinement round as one compiled call: the weighted gradient sums of
  new segments and the forward-only values, in chunks of ``internal_batch_size`` rows;
- :class:`AdaptivePath`: the segments of every image of a batch (the leaves of its bisection tree)
  and the round that evaluates new ones;
- :func:`integrate_adaptive`: the refinement loop, until the completeness error is within the
  tolerance or the next split would exceed the budget.

Each segment uses the :data:`ADAPTIVE_NODES`-point Gauss–Legendre rule
(:func:`tfxai.attribution.quadrature.gauss_legendre`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from tfxai.attribution.gradients import CHUNKS_IN_FLIGHT
from tfxai.attribution.quadrature import gauss_legendre
from tfxai.primitives import target_score

#: Gauss–Legendre nodes per segment of the adaptive rule (odd: the centre node is the
#: midpoint, where a split needs F; 1 = the midpoint rule, see :class:`IntegratedGradients`)
ADAPTIVE_NODES = 1

#: a new segment: (image, slot, a, b, F(a), F(b)); slot == number of segments → appended
NewSegment = tuple[int, int, float, float, float, float]
#: the compiled round of :func:`compile_round`
RoundFn = Callable[..., tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]]


def make_round(logits: Callable[[tf.Tensor], tf.Tensor], chunk: int) -> RoundFn:
    """The refinement round of a model's ``logits``, in chunks of ``chunk`` rows (to compile)."""

    def round_(x0: tf.Tensor, delta: tf.Tensor, targets: tf.Tensor, g_img: tf.Tensor,
               g_alpha: tf.Tensor, g_weight: tf.Tensor, g_seg: tf.Tensor, seg_img: tf.Tensor,
               f_img: tf.Tensor, f_alpha: tf.Tensor
               ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
        """One refinement round, compiled: the weighted gradient sums of new segments.

        Gradient rows r (image ``g_img[r]``, path position ``g_alpha[r]``, weight
        ``g_weight[r]``) are summed into segment ``g_seg[r]`` (of image ``seg_img[g_seg[r]]``);
        forward-only rows give the target logit at ``x' + f_alpha·(x − x')``. Both run in chunks
        of ``internal_batch_size`` rows.

        Returns the (S, H, W, 3) sums, their completeness shares Q = Σ sum·(x − x') (S,), the
        target logit at every gradient row (the forward half of the gradient pass, free), and
        the forward-only values.
        """
        n_seg = tf.shape(seg_img)[0]
        acc = tf.zeros(tf.concat([[n_seg], tf.shape(x0)[1:]], 0))

        def points(rows: tf.Tensor, img_of: tf.Tensor, alpha_of: tf.Tensor
                   ) -> tuple[tf.Tensor, tf.Tensor]:
            img = tf.gather(img_of, rows)
            a = tf.reshape(tf.gather(alpha_of, rows), (-1, 1, 1, 1))
            return tf.gather(x0, img) + a * tf.gather(delta, img), tf.gather(targets, img)

        def pieces(n: tf.Tensor) -> tf.TensorArray:
            return tf.TensorArray(tf.float32, size=(n + chunk - 1) // chunk,
                                  infer_shape=False, element_shape=tf.TensorShape([None]))

        n_grad = tf.shape(g_img)[0]
        g_values = pieces(n_grad)
        for i in tf.range((n_grad + chunk - 1) // chunk):
            # bounded memory: see gradients.accumulate_gradients
            tf.autograph.experimental.set_loop_options(parallel_iterations=CHUNKS_IN_FLIGHT)
            rows = tf.range(i * chunk, tf.minimum((i + 1) * chunk, n_grad))
            pts, t = points(rows, g_img, g_alpha)
            with tf.GradientTape() as tape:
                tape.watch(pts)
                score = target_score(logits(pts), t)
            grads = tape.gradient(score, pts)
            wts = tf.reshape(tf.gather(g_weight, rows), (-1, 1, 1, 1))
            acc += tf.math.unsorted_segment_sum(grads * wts, tf.gather(g_seg, rows), n_seg)
            g_values = g_values.write(i, score)
        q = tf.reduce_sum(acc * tf.gather(delta, seg_img), axis=[1, 2, 3])
        n_fwd = tf.shape(f_img)[0]
        f_values = pieces(n_fwd)
        for i in tf.range((n_fwd + chunk - 1) // chunk):
            tf.autograph.experimental.set_loop_options(parallel_iterations=CHUNKS_IN_FLIGHT)
            rows = tf.range(i * chunk, tf.minimum((i + 1) * chunk, n_fwd))
            pts, t = points(rows, f_img, f_alpha)
            f_values = f_values.write(i, target_score(logits(pts), t))
        return acc, q, g_values.concat(), f_values.concat()

    return round_


def compile_round(logits: Callable[[tf.Tensor], tf.Tensor], chunk: int,
                  input_size: Sequence[int]) -> RoundFn:
    """:func:`make_round` compiled once for images of ``input_size`` (H, W) and any row counts."""
    h, w = input_size
    ints, floats = tf.TensorSpec((None,), tf.int32), tf.TensorSpec((None,), tf.float32)
    return tf.function(
        make_round(logits, chunk),
        input_signature=[tf.TensorSpec((None, h, w, 3), tf.float32)] * 2
        + [ints, ints, floats, floats, ints, ints, ints, floats],
        reduce_retracing=True,
    )


@dataclass
class Segment:
    """One segment [a, b] of an image's path: F at both ends and at the midpoint node, its share
    Q = Σ_nodes w·g(α) of Σ IG, and its weighted gradient sum (H, W, 3)."""

    a: float
    b: float
    f_a: float
    f_b: float
    f_mid: float
    q: float
    grad_sum: np.ndarray


class AdaptivePath:
    """The segments of every image of a batch, and the counts of gradients and forward passes."""

    def __init__(self, round_fn: RoundFn, x0: tf.Tensor, delta: tf.Tensor, targets: tf.Tensor,
                 k: int = ADAPTIVE_NODES) -> None:
        self.round_fn, self.x0, self.delta, self.targets, self.k = round_fn, x0, delta, targets, k
        self.nodes, self.weights = gauss_legendre(k)  # k odd: the centre node is the midpoint
        self.n = int(x0.shape[0])
        self.segments: list[list[Segment]] = [[] for _ in range(self.n)]
        self.grads, self.fwds = np.zeros(self.n, np.int64), np.zeros(self.n, np.int64)

    def _round_inputs(self, new: Sequence[NewSegment], points: Sequence[tuple[int, float]]
                      ) -> list[tf.Tensor]:
        """The gradient rows of the new segments' nodes and the forward-only rows, as tensors."""
        k, nodes, weights = self.k, self.nodes, self.weights
        img = np.array([s[0] for s in new], np.int32)
        a = np.array([s[2] for s in new])
        b = np.array([s[3] for s in new])
        return [
            tf.constant(np.repeat(img, k)),
            tf.constant((a[:, None] + (b - a)[:, None] * nodes[None]).ravel(), tf.float32),
            tf.constant(((b - a)[:, None] * weights[None]).ravel(), tf.float32),
            tf.constant(np.repeat(np.arange(len(new), dtype=np.int32), k)),
            tf.constant(img),
            tf.constant(np.array([p[0] for p in points], np.int32)),
            tf.constant(np.array([p[1] for p in points]), tf.float32),
        ]

    def evaluate(self, new: Sequence[NewSegment], points: Sequence[tuple[int, float]]
                 ) -> np.ndarray:
        """Evaluate and store new segments (image, slot, a, b, F(a), F(b)), and evaluate
        forward-only points (image, α), whose values are returned."""
        k = self.k
        acc, qs, gv, fv = self.round_fn(self.x0, self.delta, self.targets,
                                        *self._round_inputs(new, points))
        acc, qs, gv = acc.numpy(), qs.numpy(), gv.numpy().reshape(len(new), k)
        for j, (i, s, sa, sb, fa, fb) in enumerate(new):
            segment = Segment(sa, sb, fa, fb, float(gv[j, k // 2]), float(qs[j]), acc[j])
            if s == len(self.segments[i]):
                self.segments[i].append(segment)
            else:
                self.segments[i][s] = segment
            self.grads[i] += k
        for i, _ in points:
            self.fwds[i] += 1
        return fv.numpy().astype(np.float64)

    def residuals(self, i: int) -> np.ndarray:
        """Each segment's completeness residual r = Q − (F(b) − F(a)) on image ``i``."""
        segments = self.segments[i]
        return np.asarray([s.q for s in segments]) - (
            np.asarray([s.f_b for s in segments]) - np.asarray([s.f_a for s in segments])
        )

    def split(self, i: int, residuals: np.ndarray) -> list[NewSegment]:
        """The two halves of image ``i``'s segment with the largest |residual|; F at the split
        point is the old segment's midpoint value."""
        s = int(np.argmax(np.abs(residuals)))
        old = self.segments[i][s]
        mid = 0.5 * (old.a + old.b)
        return [(i, s, old.a, mid, old.f_a, old.f_mid),
                (i, len(self.segments[i]), mid, old.b, old.f_mid, old.f_b)]


def integrate_adaptive(round_fn: RoundFn, x0: tf.Tensor, delta: tf.Tensor, targets: tf.Tensor,
                       budget: int, tol: float) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The weighted gradient sum Σ w·∇F over the adaptive path of every image (N, H, W, 3), and the
    diagnostics (``gradient_evaluations``, ``forward_passes``, ``completeness_error``)."""
    path = AdaptivePath(round_fn, x0, delta, targets)
    n, k = path.n, path.k
    ends = path.evaluate([(i, 0, 0.0, 1.0, 0.0, 0.0) for i in range(n)],
                         [(i, a) for i in range(n) for a in (0.0, 1.0)])
    f_start, f_end = ends[0::2], ends[1::2]
    for i in range(n):
        path.segments[i][0].f_a, path.segments[i][0].f_b = f_start[i], f_end[i]
    scale = np.maximum(np.abs(f_end - f_start), 1e-12)
    while True:
        resid = [path.residuals(i) for i in range(n)]
        err = np.array([abs(r.sum()) for r in resid]) / scale
        active = np.flatnonzero((err > tol) & (path.grads + 2 * k <= budget))
        if not len(active):
            break
        path.evaluate([half for i in active for half in path.split(i, resid[i])], [])
    total = np.array([sum(s.q for s in path.segments[i]) for i in range(n)])
    diag = {"gradient_evaluations": path.grads, "forward_passes": path.fwds,
            "completeness_error": np.abs(total - (f_end - f_start)) / scale}
    sums = np.stack([np.sum([s.grad_sum for s in path.segments[i]], axis=0) for i in range(n)])
    return sums, diag
