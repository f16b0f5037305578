"""Text generation for decoder-only language models, on onnxruntime and tokenizers only (no torch).

``decoder`` runs the exported graph with its KV cache, ``sampling`` picks tokens, ``text`` turns tokens
into streamed text (stop sequences, chat templates), ``loop`` is the decode loop, and ``service`` is the
transport-free entry the OpenAI-compatible routes, the CLI and the TUI share.

The loop is modelbay's own rather than onnxruntime-genai's: genai's loop runs only the graphs its builder
writes, and the builder does not know GPT-2. Measured on a tiny Llama (128 tokens, batch 1, a loaded
2-core machine) genai's loop costs ~0.35 ms a step against ~4.5 ms here (numpy sampling, a full detokenize
per step, KV copies without I/O binding); on SmolLM2-135M a step is ~150 ms of model time, so it is a few %.
"""
