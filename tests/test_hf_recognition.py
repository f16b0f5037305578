"""Recognising model folders, before any torch work: the task from ``architectures`` and the files, and every
hostile folder (missing files, unknown architecture, pickles, symlinks out, oversized files) refused with a
4xx saying what to change. A causal LM is handed to the text-generation path, or refused naming it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modelbay.cli import app
from modelbay.convert.hf.folder import inspect
from modelbay.convert.pipeline import push, recognise
from modelbay.errors import BadRequest, ModelbayError, TooLarge


def _folder(root, arch="BertForSequenceClassification", weights="model.safetensors", tokenizer=True, **config):
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(json.dumps({"architectures": [arch], "model_type": "bert", **config}))
    if weights:
        (root / weights).write_bytes(b"\0" * 64)
    if tokenizer:
        (root / "tokenizer.json").write_text("{}")
    return root


@pytest.mark.parametrize(
    ("arch", "task"),
    [
        ("BertForSequenceClassification", "classifier"),
        ("RobertaForTokenClassification", "tagger"),
        ("DistilBertModel", "embedder"),
        ("ViTForImageClassification", "image-classifier"),
        ("LlamaForCausalLM", "text-generation"),
        ("GPT2LMHeadModel", "text-generation"),
    ],
)
def test_task_from_the_architecture(tmp_path, arch, task):
    root = _folder(tmp_path / "m", arch)
    if task == "image-classifier":
        (root / "preprocessor_config.json").write_text(json.dumps({"size": {"height": 8, "width": 8}}))
    f = inspect(root)
    assert (f.task, f.architecture) == (task, arch)


def test_sentence_transformers_layout_and_task_override(tmp_path):
    root = _folder(tmp_path / "st", "BertModel")
    (root / "modules.json").write_text(
        json.dumps(
            [
                {"path": "", "type": "sentence_transformers.models.Transformer"},
                {"path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
                {"path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
            ]
        )
    )
    (root / "1_Pooling").mkdir()
    (root / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": True}))
    f = inspect(root)
    assert f.task == "embedder" and f.sentence_transformers["normalize"] is True
    assert inspect(_folder(tmp_path / "c"), task="embedder").task == "embedder"
    with pytest.raises(BadRequest, match="--task 'summarize'"):
        inspect(root, task="summarize")


def test_unknown_architecture_names_it_and_the_supported_tasks(tmp_path):
    with pytest.raises(BadRequest) as e:
        inspect(_folder(tmp_path / "m", "T5ForConditionalGeneration"))
    assert "T5ForConditionalGeneration" in e.value.message and "ForSequenceClassification" in e.value.message
    assert e.value.details["tasks"] == ["classifier", "tagger", "embedder", "image-classifier", "text-generation"]


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda r: (r / "config.json").unlink(), "no config.json"),
        (lambda r: (r / "config.json").write_text("{not json"), "config.json is not valid JSON"),
        (lambda r: (r / "config.json").write_text("[1]"), "must hold a JSON object"),
        (lambda r: (r / "model.safetensors").unlink(), "has no weights"),
        (lambda r: (r / "tokenizer.json").unlink(), "has no tokenizer"),
        (lambda r: (r / "modules.json").write_text("[{"), "modules.json is not valid JSON"),
    ],
)
def test_broken_folders_are_refused_saying_what_is_missing(tmp_path, make, match):
    root = _folder(tmp_path / "m")
    make(root)
    with pytest.raises(BadRequest, match=match):
        inspect(root)


def test_pickled_weights_need_trust_pickle(tmp_path):
    root = _folder(tmp_path / "m", weights="pytorch_model.bin")
    with pytest.raises(BadRequest, match="--trust-pickle"):
        inspect(root)
    assert inspect(root, trust_pickle=True).weights.name == "pytorch_model.bin"


def test_symlinks_out_of_the_folder_are_refused(tmp_path):
    (tmp_path / "secret").write_text("password")
    root = _folder(tmp_path / "m")
    os.symlink(tmp_path / "secret", root / "vocab.txt")
    with pytest.raises(BadRequest, match=r"vocab\.txt is a symlink out of the model folder"):
        inspect(root)
    (root / "vocab.txt").unlink()
    os.symlink(root / "tokenizer.json", root / "vocab.txt")  # inside: fine
    assert inspect(root).task == "classifier"
    os.symlink(tmp_path, root / "sub")
    with pytest.raises(BadRequest, match="symlinked folder"):
        inspect(root)


def test_oversized_files_and_models_are_refused_before_any_work(tmp_path, monkeypatch):
    root = _folder(tmp_path / "m")
    (root / "model.safetensors").write_bytes(b"\0" * 4096)
    with pytest.raises(TooLarge, match=r"model\.safetensors is 4096 bytes.*MODELBAY_MAX_FOLDER_BYTES"):
        inspect(root, max_folder_bytes=1000)
    with pytest.raises(TooLarge, match="MODELBAY_MAX_MODEL_BYTES") as e:
        inspect(root, max_model_bytes=2048)
    assert e.value.status == 413
    monkeypatch.setenv("MODELBAY_MAX_MODEL_BYTES", "5000")
    (root / "config.json").write_text(json.dumps({"architectures": ["BertModel"], "torch_dtype": "float16"}))
    with pytest.raises(TooLarge, match=r"about 0\.0 GiB of fp32 weights"):  # fp16 weights double in fp32
        recognise(root)


class _NoUploads:
    def push(self, *a, **kw):  # pragma: no cover - reaching it is the failure
        raise AssertionError("nothing is uploaded for a refused folder")


def test_causal_lm_folders_take_the_generation_path(tmp_path, monkeypatch):
    """A decoder LM's folder is recognised before any torch work and handed to ``prepare_causal_lm`` (its real
    export, verification and gate are tested in test_generation.py)."""
    from modelbay.convert import generation

    seen = {}

    def prepare_causal_lm(folder, **kw):
        seen.update(folder=Path(folder).name, name=kw["name"], mode=kw["quantize_mode"])
        raise ModelbayError("stop here")

    monkeypatch.setattr(generation, "prepare_causal_lm", prepare_causal_lm)
    for arch in ("GPT2LMHeadModel", "LlamaForCausalLM"):
        root = _folder(tmp_path / arch, arch)
        with pytest.raises(ModelbayError, match="stop here"):
            push(_NoUploads(), str(root), name="lm", aliases=["production"])
        assert seen == {"folder": arch, "name": "lm", "mode": "auto"}


def test_cli_refusal_is_a_clear_error_with_exit_code_2(tmp_path):
    root = _folder(tmp_path / "m", weights="pytorch_model.bin")
    r = CliRunner().invoke(app, ["--url", "http://127.0.0.1:9", "push", str(root), "--name", "m"])
    assert r.exit_code == 2, r.output
    assert "--trust-pickle" in r.output and "Traceback" not in r.output


def test_playground_highlights_a_taggers_spans():
    from modelbay_tui.screens.playground import SPAN_STYLES, spans_text

    spans = [
        {"entity": "PER", "score": 0.9, "start": 0, "end": 3, "word": "Ann"},
        {"entity": "LOC", "score": 0.8, "start": 13, "end": 18, "word": "Paris"},
    ]
    t = spans_text(["Ann lives in Paris", "ok"], [spans, []])
    lines = t.plain.splitlines()
    assert lines[0] == "Ann lives in Paris" and "'Paris'  LOC 0.800  [13:18]" in lines[2]
    assert lines[3] == "ok" and lines[4].strip() == "(no entities)"
    styled = {(s.start, s.end, str(s.style)) for s in t.spans}
    assert (0, 3, SPAN_STYLES[0]) in styled and (13, 18, SPAN_STYLES[1]) in styled
