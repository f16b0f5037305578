"""The MLP, digits and PII examples: built (or taken from the cache), then re-checked here."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

pytest.importorskip("torch")

from modelbay.convert import examples
from modelbay.manifest import ImagePreprocessing, StringPreprocessing


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _accuracy(path, x, y, name, batch=100):
    # batches as the gate ran them: dynamic int8 picks activation scales per
    # batch, so its outputs depend (slightly) on what else is in the batch
    s = _session(path)
    out = np.concatenate([s.run(None, {name: x[i : i + batch]})[0] for i in range(0, len(x), batch)])
    return float((out.argmax(1) == y).mean())


def test_mlp_from_factory_and_state_dict():
    from modelbay.convert.examples import mlp

    r = examples.build("mlp")
    m = r.metadata
    assert m.metrics["conversion"]["source"] == "torch_module"
    assert m.quantization.method in ("dynamic", "mixed") and m.metrics["gate"]["passed"]
    _, xte, _, yte = mlp.dataset()
    acc_fp32, acc_int8 = _accuracy(r.fp32_path, xte, yte, "x"), _accuracy(r.onnx_path, xte, yte, "x")
    assert acc_fp32 > 0.8
    assert 100 * (acc_fp32 - acc_int8) <= 0.5
    assert acc_int8 == pytest.approx(m.metrics["gate"]["int8"]["accuracy"])
    # cached: a second build is the same directory, not a rebuild
    again = examples.build("mlp")
    assert again.cached and again.onnx_path == r.onnx_path


def test_digits_cnn_static_int8():
    from modelbay.convert.examples import digits

    r = examples.build("digits")
    m = r.metadata
    assert m.quantization.method in ("static", "mixed") and m.quantization.per_channel
    ops = {n.op_type for n in onnx.load(str(r.onnx_path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    pre = m.preprocessing
    assert isinstance(pre, ImagePreprocessing) and (pre.height, pre.width, pre.channels) == (8, 8, 1)
    assert pre.max_value == 16.0 and pre.scale * pre.max_value == pytest.approx(1.0)
    assert m.labels == [str(i) for i in range(10)]
    _, xte, _, yte = digits.dataset()
    acc_fp32, acc_int8 = _accuracy(r.fp32_path, xte, yte, "image"), _accuracy(r.onnx_path, xte, yte, "image")
    assert acc_fp32 > 0.95
    assert 100 * (acc_fp32 - acc_int8) <= 0.5
    assert m.metrics["int8"]["size_bytes"] < m.metrics["fp32"]["size_bytes"] / 2


def test_pii_flags_sensitive_text():
    r = examples.build("pii")
    m = r.metadata
    assert isinstance(m.preprocessing, StringPreprocessing) and m.postprocessing.scores == "probabilities"
    assert m.quantization.method == "none" and m.quantization.extra["reason"] == "no quantizable nodes"
    assert m.metrics["evaluation"]["accuracy"] > 0.9
    texts = {
        "Please write to jane.doe@example.org about the invoice": "email",
        "call me on +1 (415) 555-0198 tonight": "phone",
        "card 4111 1111 1111 1111 exp 09/27": "card_number",
        "We shipped 300 units to the warehouse last week.": "ordinary",
        "The weather is lovely, let's have lunch outside.": "ordinary",
    }
    s = _session(r.onnx_path)
    labels, probs = s.run(None, {"text": np.array(list(texts), dtype=object).reshape(-1, 1)})
    predicted = [m.labels[i] for i in probs.argmax(1)]
    assert list(labels) == predicted  # the label output and the probability columns agree
    assert sum(p == want for p, want in zip(predicted, texts.values())) >= 4, predicted
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)


def test_unknown_example_is_not_found():
    from modelbay.errors import BadRequest, NotFound

    with pytest.raises(NotFound):
        examples.build("resnet")
    with pytest.raises(BadRequest):
        examples.build_all(names=["resnet"])


def test_a_build_in_progress_is_waited_for_not_repeated(tmp_path):
    """xdist workers (or two test runs) wanting the same example: the second waits for the first's build."""
    import threading

    from modelbay.convert.examples import cache

    final = cache.entry(tmp_path, "mlp", "arm64")
    entered = threading.Event()

    def second_builder():
        with cache.building(final):
            entered.set()

    with cache.building(final):
        t = threading.Thread(target=second_builder)
        t.start()
        assert not entered.wait(0.5)  # held by the first builder
    assert entered.wait(60)
    t.join()
