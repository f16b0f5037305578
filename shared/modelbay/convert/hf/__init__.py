"""Hugging Face model folders: ``folder`` recognises one (no torch), ``export`` turns it into what the convert
pipeline exports, ``evaldata`` reads evaluation data as users have it, ``pooling`` is the sentence-transformers
rule, and ``generation`` is the seam to the text-generation path."""
