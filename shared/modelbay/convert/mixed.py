"""Mixed precision: keep the nodes int8 hurts most in fp32 until the gate passes.

Ranking is by search, not by a proxy: each quantizable node is quantized alone
and its damage measured on the batches the fully-int8 model hurts most (a
cross-model activation error was tried first on MiniLM and ranked the wrong
nodes; the FFN matmuls dominate). Then the top-k nodes are excluded with k
doubling until the gate passes, and a bisection finds the smallest such k.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from modelbay.convert.data import Feed
from modelbay.convert.gate import Gate, GateReport, _run, damage, worst_batches
from modelbay.convert.quantize import Method, QuantOptions, quantizable_nodes, quantize

Progress = Callable[[str, float | None], None]


@dataclass
class MixedResult:
    path: Path
    kept_fp32: list[str]
    report: GateReport
    ranking: list[tuple[str, float]]
    tries: int


def rank_nodes(
    src: Path,
    method: Method,
    opts: QuantOptions,
    gate: Gate,
    full_q: Path,
    work: Path,
    calibration: list[Feed] | None,
    progress: Progress,
) -> list[tuple[str, float]]:
    nodes = quantizable_nodes(src, method)
    hard = worst_batches(gate, gate.outputs(full_q))
    hard_feeds = [gate.data.batches[i] for i in hard]
    one = work / "single.onnx"
    ranked = []
    for k, node in enumerate(nodes):
        progress(f"sensitivity {node}", (k + 1) / max(len(nodes), 1))
        others = tuple(n for n in nodes if n != node)
        quantize(src, one, method, replace(opts, nodes_to_exclude=others), calibration, preprocessed=True)
        outs = gate._prepare_subset(_run(one, hard_feeds, gate.output), hard)
        ranked.append((node, damage(gate, outs, hard)))
    one.unlink(missing_ok=True)
    ranked.sort(key=lambda t: -t[1])
    return ranked


def _predicted_k(ranking: list[tuple[str, float]], margin: float) -> int:
    """First guess: damages add up roughly, so drop nodes until they cover the shortfall.

    For embedders damage and margin are in cosine units; for the others the
    scales differ and the guess is only a starting point for the search.
    """
    need, total = -margin, 0.0
    for k, (_, d) in enumerate(ranking, 1):
        total += d
        if total >= need:
            return k
    return 1


def search(
    src: Path,
    method: Method,
    opts: QuantOptions,
    gate: Gate,
    full_q: Path,
    out: Path,
    work: Path,
    calibration: list[Feed] | None = None,
    progress: Progress = lambda *_: None,
    max_fraction: float = 0.5,
    first_margin: float = 0.0,
) -> MixedResult | None:
    """Smallest set of fp32 nodes (by ranked prefix) that passes; None if none does.

    Starts at a k predicted from the per-node damages, doubles until the gate
    passes, then bisects down to the smallest passing k.
    """
    ranking = rank_nodes(src, method, opts, gate, full_q, work, calibration, progress)
    order = [n for n, _ in ranking]
    limit = max(1, int(len(order) * max_fraction))
    tries = 0
    cache: dict[int, GateReport] = {}
    last = [-1]  # the k whose model currently sits in `out`

    def attempt(k: int) -> GateReport:
        nonlocal tries
        if k not in cache or last[0] != k:
            tries += k not in cache
            last[0] = k
            progress(f"mixed precision: {k} node(s) in fp32", None)
            quantize(
                src,
                out,
                method,
                replace(opts, nodes_to_exclude=tuple(order[:k]) + opts.nodes_to_exclude),
                calibration,
                preprocessed=True,
            )
            cache[k] = gate.check(out)
        return cache[k]

    lo, hi = 0, None  # lo: known failing k, hi: smallest known passing k
    k = min(_predicted_k(ranking, first_margin), limit)
    while k <= limit:
        if attempt(k).passed:
            hi = k
            break
        lo = k
        k = min(k * 2, limit) if k < limit else limit + 1
    if hi is None:
        return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if attempt(mid).passed:
            hi = mid
        else:
            lo = mid
    attempt(hi)  # leaves the passing model in `out`
    return MixedResult(out, order[:hi], cache[hi], ranking, tries)
