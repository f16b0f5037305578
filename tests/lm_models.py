"""Tiny decoder language models for tests: random weights from GPT2Config / LlamaConfig, saved with
``save_pretrained`` beside a small byte-level BPE tokenizer trained here, as a user's folder would be."""

from __future__ import annotations

from pathlib import Path

from modelbay.convert.generation import HELD_OUT, PROMPTS

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def tokenizer(folder: Path, chat: bool) -> int:
    """A byte-level BPE tokenizer saved in ``folder``; returns its vocabulary size."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] if chat else ["<|endoftext|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator([*HELD_OUT, *PROMPTS] * 4, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|im_end|>" if chat else "<|endoftext|>"
    )
    if chat:
        fast.chat_template = CHATML
    fast.save_pretrained(folder)
    return int(tok.get_vocab_size())


def tiny_lm(folder: Path, arch: str = "gpt2", seed: int = 0) -> Path:
    """A random-weight causal LM folder of architecture ``gpt2`` or ``llama`` (with a chat template)."""
    import torch
    from transformers import GenerationConfig, GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    folder.mkdir(parents=True, exist_ok=True)
    vocab = tokenizer(folder, chat=arch == "llama")
    torch.manual_seed(seed)
    if arch == "gpt2":
        model = GPT2LMHeadModel(
            GPT2Config(
                n_layer=2,
                n_head=4,
                n_embd=64,
                vocab_size=vocab,
                n_positions=512,
                bos_token_id=0,
                eos_token_id=0,
                initializer_range=0.2,
            )
        )
    else:
        model = LlamaForCausalLM(
            LlamaConfig(
                num_hidden_layers=2,
                num_attention_heads=4,
                num_key_value_heads=2,
                hidden_size=64,
                intermediate_size=128,
                vocab_size=vocab,
                max_position_embeddings=512,
                bos_token_id=0,
                eos_token_id=2,
                initializer_range=0.2,
            )
        )
    model.eval().save_pretrained(folder)
    GenerationConfig(do_sample=False, eos_token_id=model.config.eos_token_id, bos_token_id=0).save_pretrained(folder)
    return folder
