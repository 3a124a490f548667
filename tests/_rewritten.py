"""A check shared by the tests of the methods that explain a rewritten copy of the model
(guided backprop and deconvnet, LRP)."""

from __future__ import annotations

from _tiny_models import backbone, images, small_cnn

import tfxai


def assert_model_cached_and_traced_once(method: str) -> None:
    """Two calls with batches of other sizes (5 then 3, batch_size 2) reuse the attributer's
    rewritten model and trace its compiled function once."""
    bb = backbone(small_cnn())
    att = tfxai.get_attributer(method, bb, batch_size=2)
    model = att.model
    att.attribute(images(5), [0, 1, 2, 3, 4])
    att.attribute(images(3), [0, 1, 2])
    assert att.model is model
    assert att._fn.experimental_get_tracing_count() == 1
