"""Text to vectors (and pairs to verdicts), behind one small interface, chosen by config."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Embedder(Protocol):
    """Turns texts into L2-normalized float32 rows. Synchronous; callers run it off the loop.
    `wide`: the caller has the machine to itself, and the embedder may use more cores."""

    dim: int

    def encode(self, texts: list[str], wide: bool = False) -> np.ndarray: ...


def load_embedder(name: str, threads: int = 1, idle_threads: int = 1) -> Embedder:
    """all-MiniLM-L6-v2 as `minilm-onnx` (int8, fast) or `minilm` (sentence-transformers,
    torch fp32), or `hashing` (tiny and deterministic, for tests of the plumbing)."""
    if name == "minilm-onnx":
        from embeddings.onnx_minilm import OnnxMiniLMEmbedder

        return OnnxMiniLMEmbedder.load(threads, idle_threads)
    if name == "minilm":
        from embeddings.minilm import MiniLMEmbedder

        return MiniLMEmbedder.load(threads)
    if name == "hashing":
        from embeddings.hashing import HashingEmbedder

        return HashingEmbedder()
    raise ValueError(f"unknown embedder {name!r}: use 'minilm-onnx', 'minilm' or 'hashing'")
