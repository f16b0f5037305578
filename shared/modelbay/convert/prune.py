"""Structured pruning of a PyTorch model before export: whole units go, so the dense model shrinks.

onnxruntime has no sparse kernels: zeroed weights (unstructured sparsity) cost
the same time as any others. Removing whole units makes every matrix smaller,
which is faster on any runtime. The units, each found by walking the model:

* ``linear``: hidden neurons between two ``nn.Linear`` in an ``nn.Sequential``
  (rows of the first, columns of the second; elementwise activations, dropout
  and ``BatchNorm1d`` in between are carried along).
* ``conv``: output channels of a ``Conv1d/2d`` followed (through activations,
  pooling, ``BatchNorm``) by another convolution, or by ``Flatten`` and a
  ``Linear`` (each channel owns ``in_features / channels`` columns).
* ``heads``: attention heads of BERT-family encoders (a module with ``.self``
  holding ``query/key/value`` and ``.output.dense``). transformers 5 removed
  ``prune_heads``; we slice the same matrices it sliced, with its
  ``prune_linear_layer`` semantics, and keep at least one head per layer.
* ``ffn``: feed-forward neurons of those encoders (``intermediate.dense`` rows,
  ``output.dense`` columns).

Every unit is scored on sample batches (calibration data, else the evaluation
data); ``ratio`` of the units of each group (layer) with the lowest scores go:

* ``magnitude``: norm of the unit's weights in, times the norm of its weights out.
* ``activation``: mean |activation| of the unit times the norm of its weights
  out: the size of what it adds to the next layer.
* ``taylor``: first-order estimate of how much removing the unit moves the
  output: E[(a . d(r.f)/da)^2] with a fixed random projection r of the output
  (no labels needed; a normalised embedding has no usable loss of its own).

There is no fine-tune after pruning here: the accuracy gate, run on the
exported variant against the unpruned model, decides how far pruning can go.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from modelbay.errors import BadRequest

if TYPE_CHECKING:
    import torch
    from torch import nn

Score = Literal["magnitude", "activation", "taylor"]
SCORES: tuple[str, ...] = ("magnitude", "activation", "taylor")
KINDS: tuple[str, ...] = ("linear", "conv", "heads", "ffn")
Feed = dict[str, np.ndarray]


@dataclass
class Group:
    """Units of one layer: a producer whose outputs feed ``consumer`` (a Linear or a conv).

    ``producers`` lose rows (output units), ``between`` (BatchNorms) lose features,
    ``consumer`` loses input columns; unit ``u`` owns ``width`` consecutive columns.
    """

    name: str
    kind: str
    producers: list[str]
    consumer: str
    units: int
    width: int = 1
    between: list[str] = field(default_factory=list)
    attention: str | None = None  # the self-attention module whose head count changes


@dataclass
class PruneResult:
    model: Any  # the pruned copy (nn.Module)
    ratio: float
    score: str
    groups: list[dict[str, Any]]
    params_before: int
    params_after: int
    kept: dict[str, list[int]] = field(default_factory=dict)  # group name -> indices of the units kept

    def summary(self) -> dict[str, Any]:
        kinds: dict[str, list[int]] = {}
        for g in self.groups:
            k = kinds.setdefault(g["kind"], [0, 0])
            k[0] += g["before"]
            k[1] += g["after"]
        return {
            "ratio": self.ratio,
            "score": self.score,
            "params_before": self.params_before,
            "params_after": self.params_after,
            "units": {k: {"before": b, "after": a} for k, (b, a) in kinds.items()},
        }


def _nn():
    import torch.nn as nn

    return nn


def _passthrough(m: nn.Module, conv: bool) -> bool:
    """Modules that act on each unit alone, so a unit's removal passes through them."""
    nn = _nn()
    elementwise = (
        nn.ReLU,
        nn.ReLU6,
        nn.GELU,
        nn.SiLU,
        nn.Tanh,
        nn.Sigmoid,
        nn.LeakyReLU,
        nn.ELU,
        nn.Hardswish,
        nn.Mish,
        nn.Dropout,
        nn.Identity,
    )
    if isinstance(m, elementwise):
        return True
    if conv:
        return isinstance(m, (nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d, nn.Dropout2d, nn.Dropout1d))
    return False


def find_groups(model: nn.Module, kinds: tuple[str, ...] = KINDS) -> list[Group]:
    """Every prunable group of units in ``model``, in module order."""
    nn = _nn()
    groups: list[Group] = []
    names = {id(m): n for n, m in model.named_modules()}
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Sequential):
            groups += _sequential_groups(mod, name, kinds)
        selfatt, out = getattr(mod, "self", None), getattr(getattr(mod, "output", None), "dense", None)
        if (
            "heads" in kinds
            and isinstance(selfatt, nn.Module)
            and all(isinstance(getattr(selfatt, p, None), nn.Linear) for p in ("query", "key", "value"))
            and isinstance(getattr(selfatt, "attention_head_size", None), int)
            and isinstance(out, nn.Linear)
        ):
            heads = selfatt.query.out_features // selfatt.attention_head_size
            groups.append(
                Group(
                    name,
                    "heads",
                    [names[id(getattr(selfatt, p))] for p in ("query", "key", "value")],
                    names[id(out)],
                    heads,
                    selfatt.attention_head_size,
                    attention=names[id(selfatt)],
                )
            )
        inter = getattr(getattr(mod, "intermediate", None), "dense", None)
        if (
            "ffn" in kinds
            and selfatt is None
            and isinstance(inter, nn.Linear)
            and isinstance(out, nn.Linear)
            and out.in_features == inter.out_features
        ):
            groups.append(Group(name, "ffn", [names[id(inter)]], names[id(out)], inter.out_features))
    return groups


def _sequential_groups(seq: nn.Sequential, prefix: str, kinds: tuple[str, ...]) -> list[Group]:
    nn = _nn()
    mods: list[tuple[str, Any]] = list(seq.named_children())
    full = lambda n: f"{prefix}.{n}" if prefix else n  # noqa: E731
    out: list[Group] = []
    for i, (pname, prod) in enumerate(mods):
        conv = isinstance(prod, (nn.Conv1d, nn.Conv2d))
        if not (isinstance(prod, nn.Linear) or conv) or (conv and prod.groups != 1):
            continue
        if ("conv" if conv else "linear") not in kinds:
            continue
        units = int(prod.out_channels if conv else prod.out_features)
        between: list[str] = []
        flatten = False
        for cname, m in mods[i + 1 :]:
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) and m.num_features == units:
                between.append(full(cname))
            elif conv and isinstance(m, nn.Flatten) and m.start_dim == 1 and not flatten:
                flatten = True
            elif _passthrough(m, conv and not flatten):
                continue
            elif isinstance(m, nn.Linear) and (not conv or flatten) and m.in_features % units == 0:
                width = m.in_features // units
                if width == 1 or flatten:
                    kind = "conv" if conv else "linear"
                    out.append(Group(full(pname), kind, [full(pname)], full(cname), units, width, between))
                break
            elif conv and not flatten and isinstance(m, type(prod)) and m.groups == 1 and m.in_channels == units:
                out.append(Group(full(pname), "conv", [full(pname)], full(cname), units, 1, between))
                break
            else:
                break
    return out


# -- scores -------------------------------------------------------------------------------


def _first_tensor(out: Any) -> torch.Tensor:
    import torch

    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, dict):
        out = tuple(out.values())
    elif hasattr(out, "to_tuple"):
        out = out.to_tuple()
    for o in out:
        if isinstance(o, torch.Tensor):
            return o
    raise BadRequest("the model returns no tensor to score pruning against")


def _unit_sums(x: torch.Tensor, consumer: nn.Module, units: int, width: int) -> torch.Tensor:
    """Per-sample, per-unit sums over everything but the batch: [N, units]."""
    nn = _nn()
    if isinstance(consumer, nn.Linear):
        x = x.reshape(x.shape[0], -1, units, width)  # [N, positions, units, width]
        return x.sum(dim=(1, 3))
    return x.reshape(x.shape[0], units, -1).sum(-1)  # conv: [N, C, ...]


def _out_norms(consumer: Any, units: int, width: int) -> torch.Tensor:
    w = consumer.weight.detach()
    w = w.transpose(0, 1).reshape(units, -1) if w.dim() > 2 else w.t().reshape(units, -1)
    return w.norm(dim=1)


def _in_norms(model: nn.Module, g: Group) -> torch.Tensor:
    import torch

    rows = [_sub(model, p).weight.detach() for p in g.producers]
    w = torch.cat([r.reshape(g.units, -1) for r in rows], dim=1)
    return w.norm(dim=1)


def importance(
    model: nn.Module, groups: list[Group], batches: list[Feed], input_names: list[str], score: str = "activation"
) -> dict[str, np.ndarray]:
    """Score of every unit of every group (higher = keep), from ``batches`` run through ``model``."""
    import torch

    if score not in SCORES:
        raise BadRequest(f"unknown pruning score {score!r}; one of {list(SCORES)}")
    if score == "magnitude":
        return {
            g.name: (_in_norms(model, g) * _out_norms(model.get_submodule(g.consumer), g.units, g.width)).numpy()
            for g in groups
        }
    if not batches:
        raise BadRequest("activation and taylor pruning scores need sample batches (--calibration or --eval)")
    sums: dict[str, torch.Tensor] = {g.name: torch.zeros(g.units, dtype=torch.float64) for g in groups}
    count = 0
    captured: dict[str, torch.Tensor] = {}
    hooks = []
    for g in groups:
        consumer = model.get_submodule(g.consumer)

        def pre(_m, args, g=g, consumer=consumer):
            x = args[0]
            if score == "taylor":
                x.retain_grad()
                captured[g.name] = x
            else:
                s = _unit_sums(x.detach().abs(), consumer, g.units, g.width)
                sums[g.name] += s.sum(0).double()

        hooks.append(consumer.register_forward_pre_hook(pre))
    gen = torch.Generator().manual_seed(0)
    was_training = model.training
    # taylor needs gradients even through a frozen model; restored below
    frozen = [p for p in model.parameters() if not p.requires_grad] if score == "taylor" else []
    for p in frozen:
        p.requires_grad_(True)
    model.eval()
    try:
        for feed in batches:
            args = [torch.from_numpy(np.ascontiguousarray(feed[n])) for n in input_names]
            if score == "taylor":
                model.zero_grad(set_to_none=True)
                with torch.enable_grad():
                    out = _first_tensor(model(*args)).float()
                    r = torch.randn(out.shape[1:], generator=gen)
                    (out * r).sum().backward()
                for g in groups:
                    x = captured[g.name]
                    if x.grad is None:
                        continue
                    contrib = _unit_sums(x.detach() * x.grad, model.get_submodule(g.consumer), g.units, g.width)
                    sums[g.name] += (contrib.double() ** 2).sum(0)
            else:
                with torch.no_grad():
                    model(*args)
            count += len(args[0])
    finally:
        for h in hooks:
            h.remove()
        model.zero_grad(set_to_none=True)
        model.train(was_training)
        for p in frozen:
            p.requires_grad_(False)
    res = {}
    for g in groups:
        s = sums[g.name] / max(count, 1)
        if score == "activation":
            s = s * _out_norms(model.get_submodule(g.consumer), g.units, g.width).double()
        res[g.name] = s.numpy()
    return res


# -- slicing ------------------------------------------------------------------------------


def _keep(scores: np.ndarray, ratio: float) -> np.ndarray:
    n = len(scores)
    k = max(1, n - round(n * ratio))
    return np.sort(np.argsort(-scores, kind="stable")[:k])


def _sub(model: nn.Module, name: str) -> Any:
    """A submodule, typed loosely: pruning rewrites the attributes each layer type has."""
    return model.get_submodule(name)


def _slice(model: nn.Module, g: Group, keep: np.ndarray) -> None:
    import torch

    nn = _nn()
    units = torch.from_numpy(keep).long()
    cols = (units[:, None] * g.width + torch.arange(g.width)[None, :]).reshape(-1)
    with torch.no_grad():
        for p in g.producers:
            m = _sub(model, p)
            rows = cols if g.kind == "heads" else units
            m.weight = nn.Parameter(m.weight.detach().index_select(0, rows).clone())
            if m.bias is not None:
                m.bias = nn.Parameter(m.bias.detach().index_select(0, rows).clone())
            if isinstance(m, nn.Linear):
                m.out_features = len(rows)
            else:
                m.out_channels = len(rows)
        for b in g.between:
            bn = _sub(model, b)
            for attr in ("weight", "bias"):
                t = getattr(bn, attr)
                if t is not None:
                    setattr(bn, attr, nn.Parameter(t.detach().index_select(0, units).clone()))
            for attr in ("running_mean", "running_var"):
                t = getattr(bn, attr)
                if t is not None:
                    setattr(bn, attr, t.index_select(0, units).clone())
            bn.num_features = len(units)
        c = _sub(model, g.consumer)
        c.weight = nn.Parameter(c.weight.detach().index_select(1, cols).clone())
        if isinstance(c, nn.Linear):
            c.in_features = len(cols)
        else:
            c.in_channels = len(cols)
    if g.attention is not None:
        att = _sub(model, g.attention)
        att.num_attention_heads = len(keep)
        att.all_head_size = len(keep) * g.width


def count_params(model: nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def prune(
    model: nn.Module,
    ratio: float,
    *,
    groups: list[Group] | None = None,
    scores: dict[str, np.ndarray] | None = None,
    batches: list[Feed] | None = None,
    input_names: list[str] | None = None,
    score: str = "activation",
    kinds: tuple[str, ...] = KINDS,
) -> PruneResult:
    """A copy of ``model`` with ``ratio`` of each group's units removed (the lowest-scored ones).

    Pass ``groups``/``scores`` from ``find_groups``/``importance`` to prune at
    several ratios while scoring once; otherwise they are computed here from
    ``batches``. The original model is left as it was.
    """
    if not 0.0 <= ratio < 1.0:
        raise BadRequest(f"a pruning ratio is in [0, 1), not {ratio}")
    groups = find_groups(model, kinds) if groups is None else groups
    if scores is None:
        scores = importance(model, groups, batches or [], input_names or [], score)
    pruned = copy.deepcopy(model).eval()
    done = []
    kept = {}
    for g in groups:
        keep = _keep(scores[g.name], ratio)
        if len(keep) < g.units:
            _slice(pruned, g, keep)
        done.append({"name": g.name, "kind": g.kind, "before": g.units, "after": len(keep)})
        kept[g.name] = [int(k) for k in keep]
    return PruneResult(pruned, ratio, score, done, count_params(model), count_params(pruned), kept)
