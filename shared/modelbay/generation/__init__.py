"""Text generation for decoder-only language models, on onnxruntime and tokenizers only (no torch).

``decoder`` runs the exported graph with its KV cache, ``sampling`` picks tokens, ``text`` turns tokens
into streamed text (stop sequences, chat templates), ``loop`` is the decode loop, and ``service`` is the
transport-free entry the OpenAI-compatible routes, the CLI and the TUI share.
"""
