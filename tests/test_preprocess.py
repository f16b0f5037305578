"""Pre- and postprocessing on their own: what each instance form becomes, and what is refused."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest

from modelbay.errors import BadRequest
from modelbay.manifest import (
    ClassifierPostprocessing,
    EmbedderPostprocessing,
    ImagePreprocessing,
    StringPreprocessing,
    TabularPreprocessing,
    TensorSpec,
    TextPreprocessing,
)
from modelbay.postprocess import ClassifierPostprocessor, EmbedderPostprocessor, RawPostprocessor
from modelbay.preprocess.image import ImagePreprocessor
from modelbay.preprocess.tensors import RawPreprocessor, StringPreprocessor, TabularPreprocessor
from modelbay.preprocess.text import TextPreprocessor
from tests.inference_models import make_tokenizer


def ints(name):
    return TensorSpec(name=name, dtype="int64", shape=["batch", "seq"])


@pytest.fixture(scope="module")
def tokenizer_path(tmp_path_factory):
    return make_tokenizer(tmp_path_factory.mktemp("tok") / "tokenizer.json", vocab_size=200)


def test_text_truncates_pads_to_the_longest_and_masks(tokenizer_path):
    specs = {n: ints(n) for n in ("input_ids", "attention_mask", "token_type_ids")}
    pre = TextPreprocessor(TextPreprocessing(max_length=6), tokenizer_path, specs)
    feeds = pre(["hello", "the quick brown fox jumps over the lazy dog", {"text": "a", "text_pair": "b"}])
    ids, mask, types = feeds["input_ids"], feeds["attention_mask"], feeds["token_type_ids"]
    assert ids.dtype == np.int64 and ids.shape == (3, 6)  # truncated to 6: the longest after truncation
    pad = pre.tokenizer.token_to_id("[PAD]")
    assert mask[1].tolist() == [1] * 6
    n0 = int(mask[0].sum())
    assert (ids[0, n0:] == pad).all() and (mask[0, n0:] == 0).all()
    assert types[2].tolist()[: int(mask[2].sum())] == [0, 0, 0, 1, 1]  # [CLS] a [SEP] b [SEP]
    short = pre(["hello"])["input_ids"]
    assert short.shape == (1, n0)  # dynamic: a batch of one short text is not padded


def test_text_model_without_token_types_gets_no_such_feed(tokenizer_path):
    specs = {"input_ids": ints("input_ids"), "attention_mask": ints("attention_mask")}
    feeds = TextPreprocessor(TextPreprocessing(), tokenizer_path, specs)(["hi"])
    assert set(feeds) == {"input_ids", "attention_mask"}
    with pytest.raises(BadRequest, match="instance 1: expected a string"):
        TextPreprocessor(TextPreprocessing(), tokenizer_path, specs)(["ok", None])


def _png(arr: np.ndarray, mode: str) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr.astype(np.uint8), mode=mode).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def test_image_rgb_normalised_per_channel_in_nchw_and_nhwc():
    spec = TensorSpec(name="img", dtype="float32", shape=["N", 3, 4, 4])
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 255, 128, 0
    kw = dict(input="img", height=4, width=4, channels=3, mean=[0.5, 0.5, 0.5], std=[0.5, 0.25, 1.0])
    nchw = ImagePreprocessor(ImagePreprocessing(layout="NCHW", **kw), spec)(
        [_png(rgb, "RGB"), "data:image/png;base64," + _png(rgb, "RGB")]
    )["img"]
    assert nchw.shape == (2, 3, 4, 4) and nchw.dtype == np.float32
    np.testing.assert_allclose(nchw[0, :, 0, 0], [(1 - 0.5) / 0.5, (128 / 255 - 0.5) / 0.25, -0.5], atol=1e-6)
    nhwc = ImagePreprocessor(ImagePreprocessing(layout="NHWC", **kw), spec)([_png(rgb, "RGB")])["img"]
    np.testing.assert_allclose(nhwc[0], nchw[0].transpose(1, 2, 0))


def test_image_nested_lists_keep_the_model_range_and_big_images_resize():
    spec = TensorSpec(name="pixels", dtype="float32", shape=["N", 64])
    pre = ImagePreprocessor(
        ImagePreprocessing(input="pixels", height=8, width=8, layout="flat", scale=1.0, max_value=16.0), spec
    )
    digit = np.arange(64, dtype=np.float32).reshape(8, 8) % 17
    out = pre([digit.tolist(), digit.reshape(-1).tolist()])["pixels"]
    np.testing.assert_array_equal(out[0], digit.reshape(-1))
    np.testing.assert_array_equal(out[1], digit.reshape(-1))
    white = pre([_png(np.full((32, 32), 255), "L")])["pixels"]
    np.testing.assert_allclose(white, 16.0)  # decoded 0..255 -> 0..16
    with pytest.raises(BadRequest, match="instance 0: not valid base64"):
        pre(["***"])


def test_tabular_string_and_raw():
    spec = TensorSpec(name="x", dtype="float32", shape=["N", 2])
    tab = TabularPreprocessor(TabularPreprocessing(input="x", columns=["a", "b"]), spec)
    np.testing.assert_array_equal(tab([{"b": 2, "a": 1}, [3, 4]])["x"], [[1, 2], [3, 4]])
    with pytest.raises(BadRequest, match="3 values for 2 columns"):
        tab([[1, 2, 3]])
    s1 = StringPreprocessor(StringPreprocessing(input="t"), TensorSpec(name="t", dtype="string", shape=["N", 1]))
    assert s1(["a", "b"])["t"].shape == (2, 1)
    s0 = StringPreprocessor(
        StringPreprocessing(input="t", instance_shape=[]), TensorSpec(name="t", dtype="string", shape=["N"])
    )
    assert s0(["a", "b"])["t"].tolist() == ["a", "b"]
    raw = RawPreprocessor(
        [TensorSpec(name="a", dtype="int64", shape=["N"]), TensorSpec(name="b", dtype="bool", shape=["N"])]
    )
    feeds = raw([{"a": 1, "b": True}, {"a": 2, "b": False}])
    assert feeds["a"].dtype == np.int64 and feeds["b"].tolist() == [True, False]
    with pytest.raises(BadRequest, match="missing"):
        raw([{"a": 1}])
    with pytest.raises(BadRequest, match="expected integers"):
        RawPreprocessor([TensorSpec(name="a", dtype="int64", shape=["N"])])([1.5])


def test_postprocessors():
    cls = ClassifierPostprocessor(ClassifierPostprocessing(scores="s", apply_softmax=True, top_k=2), ["a", "b", "c"])
    out = cls({"s": np.array([[0.0, 2.0, 1.0]])}, {}, 1, {})
    e = np.exp([0.0, 2.0, 1.0]) / np.exp([0.0, 2.0, 1.0]).sum()
    assert out[0]["label"] == "b" and [t["label"] for t in out[0]["top_k"]] == ["b", "c"]
    assert out[0]["score"] == pytest.approx(e[1])
    assert len(cls({"s": np.array([[0.0, 2.0, 1.0]])}, {}, 1, {"top_k": 9})[0]["top_k"]) == 3
    emb = EmbedderPostprocessor(EmbedderPostprocessing(output="h"), "attention_mask")
    h = np.array([[[1.0, 0.0], [0.0, 1.0], [100.0, 100.0]]], np.float32)
    v = emb({"h": h}, {"attention_mask": np.array([[1, 1, 0]])}, 1, {})[0]
    np.testing.assert_allclose(v, [2**-0.5, 2**-0.5], rtol=1e-6)  # the padded token is ignored
    cls_pool = EmbedderPostprocessor(EmbedderPostprocessing(output="h", pooling="cls", normalize=False), None)
    assert cls_pool({"h": h}, {}, 1, {})[0] == [1.0, 0.0]
    raw = RawPostprocessor(["y", "z"])
    assert raw({"y": np.array([[1], [2]]), "z": np.array(5)}, {}, 2, {}) == [{"y": [1], "z": 5}, {"y": [2], "z": 5}]
