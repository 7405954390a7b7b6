"""Export a torch text model to int8 ONNX: shared by the verifier and embedder scripts."""

from __future__ import annotations

from pathlib import Path

INPUTS = ["input_ids", "attention_mask", "token_type_ids"]


def export_int8(model, sample: dict, output: str, path: Path) -> float:
    """Export `model` (called with the three BERT inputs) to `path`, int8 weights; returns MB.

    Dynamic quantization (int8 weights, activations scaled at run time) keeps the file a
    quarter of fp32 and runs 2-3x faster on a CPU; both scripts measure that quality holds.
    """
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fp32 = path.with_suffix(".fp32.onnx")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        model,
        tuple(sample[name] for name in INPUTS),
        str(fp32),
        input_names=INPUTS,
        output_names=[output],
        opset_version=17,
        dynamo=False,
        dynamic_axes={n: {0: "batch", 1: "tokens"} for n in INPUTS} | {output: {0: "batch"}},
    )
    quantize_dynamic(str(fp32), str(path), weight_type=QuantType.QInt8)
    fp32.unlink()
    return path.stat().st_size / 2**20
