"""Decoder language models in: a Hugging Face ``save_pretrained`` folder of a causal LM (GPT-2, Llama, ...)
to an ONNX graph with its KV cache, verified against transformers, compressed behind a generation gate.

``prepare_causal_lm(folder, ...)`` is the whole pipeline and returns a ``pipeline.Prepared`` that
``pipeline.publish`` registers like any other; ``is_causal_lm(folder)`` recognises such folders.

Exporter (measured on torch 2.13 / transformers 5.23, see the lead's notes): ``torch.onnx.export(dynamo=True)``
over a wrapper that takes the cache as flat tensors. It covers GPT-2 and Llama alike and verifies to ~1e-6.
optimum-onnx 0.1.0 does not install beside transformers 5 (it pins transformers<4.58 and downgrades
tokenizers); onnxruntime-genai's builder does not know GPT-2 and writes its own graph layout
(GroupQueryAttention) that only its own runtime loop reads.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BadRequest, InvalidModel
from ..generation.decoder import Decoder, past_names, present_names
from ..generation.loop import Run
from ..generation.sampling import Sampling
from ..manifest import GenerationSpec, QuantizationInfo, VersionMetadata
from .gate import GateFailed, GateReport
from .pipeline import Events, Prepared, Progress, Reporter, Stage
from .quiet import quiet_export, quiet_quantizer

# what a pushed folder's config.json says it is
CAUSAL_SUFFIXES = ("ForCausalLM", "LMHeadModel")
CHAT_TEMPLATE = "chat_template.jinja"
GENERATION_CONFIG = "generation_config.json"
TOKENIZER = "tokenizer.json"
SAMPLING_KEYS = ("do_sample", "temperature", "top_k", "top_p", "repetition_penalty", "max_new_tokens")

# prompts whose greedy continuations verification and the gate compare
PROMPTS = (
    "The capital of France is",
    "Once upon a time, there was a",
    "def fibonacci(n):",
    "The three primary colors are",
    "Water boils at a temperature of",
    "In 1969, the first person to walk on the Moon",
)
# held-out text for perplexity: plain English prose, none of it from any training set on purpose
HELD_OUT = (
    "The river ran slowly through the valley, past the old mill and the fields of wheat. In the evening the "
    "farmers walked home along its banks, talking about the weather and the price of grain.",
    "A computer program is a sequence of instructions that a computer can execute. Programs are written in "
    "programming languages, which are translated into machine code by compilers or interpreters.",
    "The museum opened its new wing on Saturday. Visitors could see paintings from the seventeenth century, "
    "a collection of ancient coins, and a large model of the city as it looked two hundred years ago.",
    "To make bread, mix flour, water, salt and yeast into a dough. Knead it for ten minutes, let it rise "
    "for an hour, shape it into a loaf and bake it in a hot oven until the crust is golden brown.",
    "The committee will meet next Tuesday to discuss the budget for the coming year. Members are asked to "
    "read the report in advance and to send their questions to the secretary by Monday.",
    "Many birds fly south for the winter. They travel thousands of kilometres, often following the same "
    "routes every year, and return in the spring to build their nests.",
)


def is_causal_lm(path: str | Path) -> bool:
    """A folder whose config.json names a causal-LM architecture (``*ForCausalLM``, ``GPT2LMHeadModel``)."""
    config = Path(path) / "config.json"
    if not config.is_file():
        return False
    try:
        archs = json.loads(config.read_text(encoding="utf-8")).get("architectures") or []
    except (ValueError, OSError, AttributeError):
        return False
    return any(isinstance(a, str) and a.endswith(CAUSAL_SUFFIXES) for a in archs)


@dataclass
class GenerationThresholds:
    max_perplexity_increase: float = 0.10  # relative: 0.10 allows fp32 perplexity x 1.10
    min_agreement: float = 0.75  # mean fraction of each greedy continuation equal to fp32's, before the first change


@dataclass
class Folder:
    """What a causal-LM folder holds besides its weights."""

    path: Path
    config: dict[str, Any]
    tokenizer: Any  # tokenizers.Tokenizer
    tokenizer_file: Path
    chat_template: str | None
    generation: dict[str, Any]
    bos: str | None
    eos: str | None
    bos_id: int | None
    eos_ids: list[int]
    pad_id: int | None


def _ids(value: Any) -> list[int]:
    if value is None:
        return []
    return [int(v) for v in (value if isinstance(value, list) else [value])]


def read_folder(folder: str | Path, scratch: Path) -> Folder:
    """The tokenizer (a tokenizer.json, written from the folder's tokenizer if it has none), the chat template,
    the generation config and the special tokens."""
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    path = Path(folder)
    if not is_causal_lm(path):
        raise BadRequest(f"{path}: not a causal language model folder (config.json names no *ForCausalLM)")
    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    try:
        hf_tok = AutoTokenizer.from_pretrained(str(path))
    except Exception as e:  # transformers raises many kinds for a missing or broken tokenizer
        raise BadRequest(f"{path}: no usable tokenizer ({str(e).splitlines()[0][:200]})") from None
    tok_file = path / TOKENIZER
    if not tok_file.is_file():
        backend = getattr(hf_tok, "backend_tokenizer", None)
        if backend is None:
            raise BadRequest(f"{path}: the tokenizer has no fast (tokenizers) form to serve with")
        tok_file = scratch / TOKENIZER
        backend.save(str(tok_file))
    gen_file = path / GENERATION_CONFIG
    generation = json.loads(gen_file.read_text(encoding="utf-8")) if gen_file.is_file() else {}
    template = getattr(hf_tok, "chat_template", None)
    if isinstance(template, dict):  # several named templates: the default one
        template = template.get("default")
    bos_id = generation.get("bos_token_id", config.get("bos_token_id", hf_tok.bos_token_id))
    eos_ids = _ids(generation.get("eos_token_id")) or _ids(config.get("eos_token_id"))
    if hf_tok.eos_token_id is not None and hf_tok.eos_token_id not in eos_ids:
        eos_ids.append(int(hf_tok.eos_token_id))
    pad = generation.get("pad_token_id", config.get("pad_token_id", hf_tok.pad_token_id))
    return Folder(
        path,
        config,
        Tokenizer.from_file(str(tok_file)),
        tok_file,
        template if isinstance(template, str) and template.strip() else None,
        generation,
        hf_tok.bos_token,
        hf_tok.eos_token,
        None if bos_id is None else int(bos_id),
        eos_ids,
        None if isinstance(pad, list) or pad is None else int(pad),
    )


def load_model(folder: Path) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
    except Exception as e:
        raise InvalidModel(f"transformers cannot load {folder}: {str(e).splitlines()[0][:300]}") from None


def spec_of(model: Any, info: Folder) -> GenerationSpec:
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    heads = cfg.num_attention_heads
    return GenerationSpec(
        architecture=(cfg.architectures or [type(model).__name__])[0],
        num_layers=cfg.num_hidden_layers,
        num_kv_heads=getattr(cfg, "num_key_value_heads", None) or heads,
        head_dim=getattr(cfg, "head_dim", None) or cfg.hidden_size // heads,
        vocab_size=cfg.vocab_size,
        max_positions=getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None),
        chat_template=CHAT_TEMPLATE if info.chat_template else None,
        bos_token=info.bos,
        eos_token=info.eos,
        bos_token_id=info.bos_id,
        eos_token_ids=info.eos_ids,
        pad_token_id=info.pad_id,
        defaults={k: info.generation[k] for k in SAMPLING_KEYS if k in info.generation},
    )


def export(model: Any, spec: GenerationSpec, out: Path) -> None:
    """The model as one ONNX file with the KV cache as inputs and outputs; batch, prompt and past dynamic."""
    import torch
    from transformers import DynamicCache

    layers = spec.num_layers

    class Flat(torch.nn.Module):
        """The cache as flat tensors in and out: the ONNX graph cannot take transformers' Cache objects."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any, position_ids: Any, *past: Any) -> Any:
            cache = DynamicCache(config=model.config)
            for i in range(layers):
                cache.update(past[2 * i], past[2 * i + 1], i)
            out = self.model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                past_key_values=cache,
                use_cache=True,
            )
            flat = []
            for layer in out.past_key_values.layers:
                flat += [layer.keys, layer.values]
            return (out.logits, *flat)

    batch, new, old = 2, 3, 4
    ids = torch.randint(0, spec.vocab_size, (batch, new))
    mask = torch.ones(batch, old + new, dtype=torch.long)
    pos = torch.arange(old, old + new).expand(batch, new)
    past = [torch.zeros(batch, spec.num_kv_heads, old, spec.head_dim) for _ in range(2 * layers)]
    auto = torch.export.Dim.AUTO
    shapes = {
        "input_ids": {0: auto, 1: auto},
        "attention_mask": {0: auto, 1: auto},
        "position_ids": {0: auto, 1: auto},
        "past": tuple({0: auto, 2: auto} for _ in range(2 * layers)),
    }
    inputs = ["input_ids", "attention_mask", "position_ids", *past_names(layers)]
    with quiet_export(), torch.no_grad():
        try:
            prog = torch.onnx.export(
                Flat().eval(),
                (ids, mask, pos, *past),
                input_names=inputs,
                output_names=["logits", *present_names(layers)],
                dynamic_shapes=shapes,
                dynamo=True,
                optimize=True,
                verbose=False,
            )
        except Exception as e:
            raise InvalidModel(
                f"exporting {spec.architecture} to ONNX failed: {str(e).splitlines()[0][:300]}"
            ) from None
    if prog is None:
        raise InvalidModel("torch.onnx.export returned no ONNX program")
    prog.save(str(out), external_data=False)
    _matmul_form(out)


def _matmul_form(path: Path) -> None:
    """Every weight product as MatMul(x, constant): what onnxruntime's weight-only quantizer reads.

    The exporter writes GPT-2's Conv1D as Gemm, and a tied LM head as MatMul(x, Transpose(embedding)).
    Transposes of initializers become transposed initializers; Gemm(x, W, b) becomes MatMul + Add.
    The symbolic dims get names a reader understands on the way (batch, sequence, past_sequence).
    """
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    nodes = []
    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Transpose" and node.input[0] in inits:
            value = numpy_helper.to_array(inits[node.input[0]])
            folded = numpy_helper.from_array(np.ascontiguousarray(value.transpose(attrs.get("perm"))), node.output[0])
            graph.initializer.append(folded)
            inits[folded.name] = folded
            continue
        plain = attrs.get("alpha", 1.0) == 1.0 and attrs.get("beta", 1.0) == 1.0 and not attrs.get("transA", 0)
        if node.op_type == "Gemm" and node.input[1] in inits and plain:
            weight = node.input[1]
            if attrs.get("transB", 0):
                value = numpy_helper.to_array(inits[weight]).T
                weight = f"{weight}.T"
                graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(value), weight))
            bias = node.input[2] if len(node.input) > 2 and node.input[2] else None
            product = f"{node.output[0]}.matmul" if bias else node.output[0]
            nodes.append(helper.make_node("MatMul", [node.input[0], weight], [product], name=f"{node.name}.MatMul"))
            if bias:
                nodes.append(helper.make_node("Add", [product, bias], [node.output[0]], name=f"{node.name}.Add"))
            continue
        nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    keep = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    names: dict[str, str] = {}
    for vi in model.graph.input:
        dims = vi.type.tensor_type.shape.dim
        if vi.name == "input_ids":
            names.setdefault(dims[0].dim_param, "batch")
            names.setdefault(dims[1].dim_param, "sequence")
        elif vi.name == "attention_mask":
            names.setdefault(dims[1].dim_param, "total_sequence")
        elif vi.name.startswith("past_key_values."):
            names.setdefault(dims[2].dim_param, "past_sequence")
    for vi in [*model.graph.input, *model.graph.output]:
        for d in vi.type.tensor_type.shape.dim:
            if d.dim_param:
                d.dim_param = names.get(d.dim_param, "past_sequence + sequence" if "+" in d.dim_param else d.dim_param)
    onnx.save(model, str(path))


def decoder_for(path: Path, spec: GenerationSpec) -> Decoder:
    import onnxruntime as ort

    from ..cpu_features import exact_int8

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    exact_int8(opts)  # as the engine serves it: int8 products exact on CPUs whose kernels saturate
    return Decoder(ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"]), spec)


def _encode(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer.encode(text, add_special_tokens=True).ids)


def _greedy(decoder: Decoder, tokenizer: Any, prompts: Sequence[list[int]], n: int, eos: Sequence[int]) -> Run:
    run = Run(decoder, tokenizer, list(prompts), Sampling(temperature=0.0), max_tokens=n, eos=eos)
    for _ in run:
        pass
    return run


def verify(model: Any, path: Path, spec: GenerationSpec, tokenizer: Any, new_tokens: int = 16) -> dict[str, Any]:
    """Greedy continuations of ``PROMPTS`` by transformers' ``generate`` and by modelbay's loop over the ONNX
    graph, and the largest logit difference along them. Raises InvalidModel if a continuation differs."""
    import torch
    from transformers import GenerationConfig

    decoder = decoder_for(path, spec)
    worst, compared, prompts = 0.0, 0, []
    for text in PROMPTS:
        ids = _encode(tokenizer, text)
        if not ids:
            continue
        prompts.append(ids)
        config = GenerationConfig(
            do_sample=False, max_new_tokens=new_tokens, eos_token_id=spec.eos_token_ids or None, pad_token_id=0
        )
        with torch.no_grad():
            out = model.generate(
                torch.tensor([ids]),
                attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                generation_config=config,
                output_logits=True,
                return_dict_in_generate=True,
            )
        ref = [int(t) for t in out.sequences[0, len(ids) :]]
        ref_logits = [s[0].numpy() for s in out.logits]
        logits, cache = decoder.prefill([ids])
        got: list[int] = []
        for step in range(len(ref)):
            worst = max(worst, float(np.max(np.abs(logits[0] - ref_logits[step]))))
            compared += 1
            tok = int(np.argmax(logits[0]))
            got.append(tok)
            if tok in spec.eos_token_ids or tok != ref[step]:
                break
            logits, cache = decoder.step(np.array([tok]), cache)
        if got != ref:
            raise InvalidModel(
                f"the ONNX export does not continue {text!r} as transformers does: {got} vs {ref}",
                prompt=text,
                onnx=got,
                transformers=ref,
                max_logit_error=worst,
            )
    # several prompts as one left-padded batch must give each prompt's own greedy text
    alone = [_greedy(decoder, tokenizer, [p], new_tokens, ()).tokens[0] for p in prompts]
    batched = _greedy(decoder, tokenizer, prompts, new_tokens, ()).tokens
    return {
        "prompts": len(prompts),
        "new_tokens": new_tokens,
        "steps_compared": compared,
        "greedy_identical": True,
        "max_logit_error": worst,
        "batched_identical": alone == batched,
    }


def perplexity(decoder: Decoder, tokenizer: Any, texts: Sequence[str], max_tokens: int = 256) -> float:
    nll, count = 0.0, 0
    for text in texts:
        ids = _encode(tokenizer, text)[:max_tokens]
        if len(ids) < 2:
            continue
        logits = decoder.logits(ids).astype(np.float64)
        shifted = logits[:-1] - logits[:-1].max(axis=1, keepdims=True)
        logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        nll -= float(logp[np.arange(len(ids) - 1), ids[1:]].sum())
        count += len(ids) - 1
    if count == 0:
        raise BadRequest("the held-out text gives no tokens to measure perplexity on")
    return math.exp(nll / count)


class GenerationGate:
    """Perplexity on held-out text and agreement of greedy continuations, quantized against fp32."""

    def __init__(
        self,
        fp32: Path,
        spec: GenerationSpec,
        tokenizer: Any,
        thresholds: GenerationThresholds | None = None,
        held_out: Sequence[str] = HELD_OUT,
        new_tokens: int = 16,
    ) -> None:
        self.spec, self.tokenizer, self.held_out, self.new_tokens = spec, tokenizer, held_out, new_tokens
        self.thresholds = thresholds or GenerationThresholds()
        self.prompts = [p for p in (_encode(tokenizer, t) for t in PROMPTS) if p]
        decoder = decoder_for(fp32, spec)
        self.fp32_ppl = perplexity(decoder, tokenizer, held_out)
        self.fp32_tokens = [_greedy(decoder, tokenizer, [p], new_tokens, ()).tokens[0] for p in self.prompts]

    def check(self, path: Path, label: str) -> GateReport:
        decoder = decoder_for(path, self.spec)
        ppl = perplexity(decoder, self.tokenizer, self.held_out)
        ours = [_greedy(decoder, self.tokenizer, [p], self.new_tokens, ()).tokens[0] for p in self.prompts]
        shares = []
        for a, b in zip(self.fp32_tokens, ours):
            same = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
            shares.append(same / max(len(a), 1))
        agreement = float(np.mean(shares))
        identical = sum(a == b for a, b in zip(self.fp32_tokens, ours)) / len(ours)
        t = self.thresholds
        increase = ppl / self.fp32_ppl - 1.0
        failures = []
        if increase > t.max_perplexity_increase:
            failures.append(
                f"{label} perplexity {ppl:.3f} is {increase:+.1%} over fp32's {self.fp32_ppl:.3f} "
                f"(limit {t.max_perplexity_increase:+.0%})"
            )
        if agreement < t.min_agreement:
            failures.append(f"{label} greedy agreement {agreement:.3f} < {t.min_agreement}")
        return GateReport(
            task="generator",
            metric="perplexity + greedy agreement",
            fp32={"perplexity": self.fp32_ppl},
            int8={
                "perplexity": ppl,
                "perplexity_increase": increase,
                "greedy_agreement": agreement,
                "identical_continuations": identical,
            },
            thresholds=asdict(t),
            passed=not failures,
            failures=failures,
            samples=len(self.held_out),
            margin=min(t.max_perplexity_increase - increase, agreement - t.min_agreement),
            extra={"variant": label, "prompts": len(self.prompts), "new_tokens": self.new_tokens},
        )


def quantize_lm(fp32: Path, out: Path, kind: str, target: str = "arm64") -> dict[str, Any]:
    """int8: onnxruntime's dynamic quantizer on the MatMuls; int4: its block-wise weight-only MatMulNBits."""
    import onnx

    from .quantize import options_for, quantize

    if kind == "int8":
        opts = options_for(target)
        quantize(fp32, out, "dynamic", opts, preprocessed=True)
        return {"method": "dynamic", **opts.info("dynamic")}
    with quiet_quantizer():
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

        q = MatMulNBitsQuantizer(
            onnx.load(str(fp32)),
            bits=4,
            block_size=32,
            is_symmetric=False,
            accuracy_level=0,
            op_types_to_quantize=("MatMul",),
        )
        q.process()
    q.model.save_model_to_file(str(out), use_external_data_format=False)
    return {
        "method": "int4",
        "weight_type": "int4 blocks of 32, asymmetric (MatMulNBits)",
        "extra": {"accuracy_level": 0},
    }


def prepare_causal_lm(
    folder: str | Path,
    *,
    name: str,
    workdir: str | Path,
    quantize_mode: str = "none",
    metadata: VersionMetadata | None = None,
    thresholds: GenerationThresholds | None = None,
    held_out: Sequence[str] = HELD_OUT,
    target: str = "arm64",
    fallback_fp32: bool = False,
    progress: Progress | None = None,
    events: Events | None = None,
) -> Prepared:
    """The folder -> fp32 ONNX with KV cache (verified) -> int8/int4 behind the generation gate -> metadata.

    ``quantize_mode``: "none", "dynamic"/"int8", "int4", or "auto" (int4, and int8 if int4 fails the gate).
    Raises GateFailed (422, with the numbers) when no asked variant passes, unless ``fallback_fp32`` (the demo):
    then the fp32 model is kept, its metadata holding the refused numbers.
    """
    rep = Reporter(events, progress)
    try:
        return _prepare(
            Path(folder), name, Path(workdir), quantize_mode, metadata, thresholds, held_out, target, fallback_fp32, rep
        )
    except BaseException:
        rep.fail()
        raise


def _prepare(
    folder: Path,
    name: str,
    work: Path,
    mode: str,
    metadata: VersionMetadata | None,
    thresholds: GenerationThresholds | None,
    held_out: Sequence[str],
    target: str,
    fallback_fp32: bool,
    rep: Reporter,
) -> Prepared:
    kinds = {"none": [], "dynamic": ["int8"], "int8": ["int8"], "int4": ["int4"], "auto": ["int4", "int8"]}
    if mode not in kinds:
        raise BadRequest(f"--quantize for a language model is none, dynamic (int8), int4 or auto, not {mode!r}")
    work.mkdir(parents=True, exist_ok=True)
    rep.start(Stage.CONVERT, "reading the folder")
    info = read_folder(folder, work)
    model = load_model(folder)
    spec = spec_of(model, info)
    fp32 = work / "model.fp32.onnx"
    rep.say("exporting with the KV cache (torch.onnx dynamo)")
    t0 = time.perf_counter()
    export(model, spec, fp32)
    export_s = time.perf_counter() - t0
    rep.say("verifying greedy continuations against transformers")
    check = verify(model, fp32, spec, info.tokenizer)
    del model
    rep.done(Stage.CONVERT, f"exported in {export_s:.0f} s; max logit error {check['max_logit_error']:.2e}")
    side = {TOKENIZER: info.tokenizer_file}
    if info.chat_template:
        (work / CHAT_TEMPLATE).write_text(info.chat_template, encoding="utf-8")
        side[CHAT_TEMPLATE] = work / CHAT_TEMPLATE
    if (folder / GENERATION_CONFIG).is_file():
        side[GENERATION_CONFIG] = folder / GENERATION_CONFIG
    meta = (metadata or VersionMetadata()).model_copy(deep=True)
    meta.task = "generator"
    meta.generation = spec
    meta.metrics["conversion"] = {
        "source": "transformers",
        "exporter": "torch.export (dynamo)",
        "export_seconds": round(export_s, 1),
        **check,
    }
    fp32_meta = meta.model_copy(deep=True)
    fp32_meta.quantization = QuantizationInfo(method="none")
    if not kinds[mode]:
        meta.quantization = fp32_meta.quantization
        rep.skip(Stage.QUANTIZE, "not asked")
        rep.skip(Stage.GATE, "nothing to gate")
        return Prepared(name, fp32, None, meta, fp32_meta, side, None, None)
    rep.start(Stage.QUANTIZE, "measuring fp32 perplexity and continuations")
    gate = GenerationGate(fp32, spec, info.tokenizer, thresholds, held_out)
    fp32_meta.metrics["evaluation"] = {"perplexity": gate.fp32_ppl}
    reports: list[GateReport] = []
    for kind in kinds[mode]:
        out = work / f"model.{kind}.onnx"
        rep.say(f"quantizing ({kind})")
        qinfo = quantize_lm(fp32, out, kind, target)
        rep.done(Stage.QUANTIZE, f"{kind}")
        rep.start(Stage.GATE, f"checking {kind}: perplexity and greedy agreement")
        report = gate.check(out, kind)
        reports.append(report)
        if report.passed:
            meta.quantization = QuantizationInfo(
                **{k: v for k, v in qinfo.items() if k in QuantizationInfo.model_fields}
            )
            meta.metrics["gate"] = report.as_dict()
            if len(reports) > 1:
                meta.metrics["gate_refused"] = [r.as_dict() for r in reports[:-1]]
            rep.done(Stage.GATE, f"{kind} passed")
            return Prepared(name, fp32, out, meta, fp32_meta, side, report, None)
    failures = [f for r in reports for f in r.failures]
    if fallback_fp32:
        fp32_meta.metrics["gate_refused"] = [r.as_dict() for r in reports]
        rep.done(Stage.GATE, "no compressed variant passed: keeping fp32")
        return Prepared(name, fp32, None, fp32_meta, fp32_meta, side, reports[-1], None)
    raise GateFailed(
        "quantized model refused by the accuracy gate: " + "; ".join(failures),
        gate=reports[-1].as_dict(),
        tried={r.extra["variant"]: r.int8 for r in reports},
    )
