"""Judge labeled pairs in-process as the semantic tier would, without a gateway: the fast
loop for tuning guards and calibration (the official figures come from `cachegate eval`).

    .venv/bin/python scripts/score_pairs.py --pairs bench/data/prompt_pairs.jsonl --split tune

For each pair `text_a` is the stored text and `text_b` the new one, as in the eval
protocol, with one entry in the partition: a hit needs the cosine over the floor, then the
guards' pass, then the calibrated score at the threshold; or the same request (score 1),
whose cosine needs only SAME_REQUEST_FLOOR.
Model outputs are kept in .cache/pair-scores/, so a second run re-judges in seconds.

A verdict diff, the check each guard change gets: write every pair's verdict with --rows
before the change, then judge again with --against those rows to list the pairs whose
verdict moved (hit or miss, guard, same request):

    scripts/score_pairs.py --pairs F --split all --rows /tmp/before.jsonl
    # ... change policies/ ...
    scripts/score_pairs.py --pairs F --split all --against /tmp/before.jsonl
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from embeddings.verifier import MODELS_DIR, Calibration, language_bar
from gateway.cache import SAME_REQUEST_FLOOR
from gateway.config import SemanticConfig
from policies.prompts import ENGLISH, decompose, judge
from tools.pairs import Pair, load_pairs, select

CACHE = Path(".cache/pair-scores")
COSINE_FLOOR = SemanticConfig().cosine_floor
# The calibration fits its scale on candidates from this cosine up: more pairs than are served.
FIT_FLOOR = 0.5


def within_reach(cosines: np.ndarray, same: np.ndarray, floor: np.ndarray | float) -> np.ndarray:
    """The candidates the gateway looks at: the same request from SAME_REQUEST_FLOOR, any
    other from `floor` (at least the cosine floor, which is not below it)."""
    return (same & (cosines >= SAME_REQUEST_FLOOR)) | (cosines >= floor)


def model_outputs(pairs: list[Pair], threads: int) -> tuple[np.ndarray, np.ndarray]:
    """(cosine, verifier logit) of each pair, as served: the new text first. Kept in
    CACHE under the pairs and the tails of both model files."""
    key = hashlib.sha1(
        json.dumps([(p.text_a, p.text_b) for p in pairs]).encode()
        + (MODELS_DIR / "verifier.onnx").read_bytes()[-4096:]
        + (MODELS_DIR / "minilm.int8.onnx").read_bytes()[-4096:]
    ).hexdigest()[:16]
    path = CACHE / f"{key}.npz"
    if path.exists():
        saved = np.load(path)
        return saved["cosines"], saved["logits"]
    from embeddings.onnx_minilm import OnnxMiniLMEmbedder
    from embeddings.verifier import CrossEncoderVerifier

    embedder = OnnxMiniLMEmbedder.load(threads)
    verifier = CrossEncoderVerifier.load(calibration=None, threads=threads)
    a = np.concatenate([embedder.encode([p.text_a]) for p in pairs])
    b = np.concatenate([embedder.encode([p.text_b]) for p in pairs])
    cosines = (a * b).sum(axis=1).astype(np.float64)
    logits = verifier.logits([(p.text_b, p.text_a) for p in pairs])
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(path, cosines=cosines, logits=logits)
    return cosines, logits


def figures(hits: np.ndarray, labels: np.ndarray) -> str:
    true_hits = int((hits & (labels == 1)).sum())
    count = int(hits.sum())
    negatives = int((labels == 0).sum())
    precision = true_hits / count if count else 1.0
    recall = true_hits / max(1, int(labels.sum()))
    false_rate = (count - true_hits) / max(1, negatives)
    return (
        f"precision {precision:.3f} recall {recall:.3f} false-hit rate {false_rate:.3f} "
        f"({count} hits, {count - true_hits} false; {len(labels)} pairs)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", default="bench/data/prompt_pairs.jsonl")
    parser.add_argument("--split", default="tune")
    parser.add_argument("--calibration", default=str(MODELS_DIR / "verifier.json"))
    parser.add_argument("--threshold", type=float, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--show", default=None, help="print the misjudged pairs of this kind")
    parser.add_argument("--rows", default=None, help="append each pair's verdict here (JSON lines)")
    parser.add_argument(
        "--against", default=None, help="verdict rows of an earlier run: print what moved"
    )
    args = parser.parse_args()
    pairs = select(load_pairs(args.pairs), args.split)
    calibration = Calibration.of(json.loads(Path(args.calibration).read_text()))
    threshold = calibration.default_threshold if args.threshold is None else args.threshold
    cosines, logits = model_outputs(pairs, args.threads)
    asked = [decompose(p.text_b) for p in pairs]
    verdicts = [judge(prompt, decompose(p.text_a)) for prompt, p in zip(asked, pairs, strict=True)]
    # As the gateway does: another language than English clears its margin too.
    english = np.array([a.language == ENGLISH for a in asked])
    bars = np.array([language_bar(threshold, calibration.margin(e)) for e in english])
    lowest = [calibration.lowest_cosine(b, e) for b, e in zip(bars, english, strict=True)]
    floor = np.maximum(COSINE_FLOOR, lowest)
    scores = calibration.score(
        logits,
        cosines,
        np.array([v.overlap for v in verdicts]),
        np.array([v.swapped for v in verdicts], dtype=np.float64),
        english,
    )
    same = np.array([v.same for v in verdicts])
    passed = np.array([v.guard is None for v in verdicts])
    # The same request answers with score 1; others must pass the guards and reach the bar.
    hits = within_reach(cosines, same, floor) & (same | (passed & (np.round(scores, 4) >= bars)))
    labels = np.array([p.label for p in pairs])
    kinds = np.array([p.kind or "-" for p in pairs])
    print(
        f"{args.pairs} ({args.split}) at threshold {threshold:.4f} (other languages"
        f" +{calibration.other_language_margin:.4f}), cosine floor {floor.min():.3f}"
    )
    print(f"  overall: {figures(hits, labels)}")
    for kind in sorted(set(kinds)):
        mine = kinds == kind
        print(f"  {kind:>15}: {figures(hits[mine], labels[mine])}")
    vetoes: dict[str, Counter[str]] = defaultdict(Counter)
    for verdict, label in zip(verdicts, labels, strict=True):
        vetoes["positives" if label else "negatives"][verdict.guard or "-"] += 1
    for side, counts in vetoes.items():
        print(f"  guards on {side}: {dict(counts.most_common())}")
    wrong = int((same & (labels == 0)).sum())
    print(f"  same-request pairs: {int(same.sum())} ({wrong} of them negatives)")
    rows = [
        {
            "set": f"{args.pairs}:{args.split}",
            "label": pair.label,
            "hit": bool(hits[i]),
            "same": bool(same[i]),
            "guard": verdicts[i].guard,
            "score": round(float(scores[i]), 4),
            "text_a": pair.text_a,
            "text_b": pair.text_b,
        }
        for i, pair in enumerate(pairs)
    ]
    if args.rows:
        with open(args.rows, "a", encoding="utf-8") as out:
            out.writelines(json.dumps(row) + "\n" for row in rows)
    if args.against:
        moved(rows, args.against)
    if args.show:
        for i, pair in enumerate(pairs):
            if pair.kind == args.show and hits[i] != bool(pair.label):
                print(
                    f"\n[{pair.label}] hit={hits[i]} guard={verdicts[i].guard} same={same[i]} "
                    f"score={scores[i]:.3f} cos={cosines[i]:.3f}\n  A: {pair.text_a!r}\n"
                    f"  B: {pair.text_b!r}"
                )


def moved(rows: list[dict], earlier_path: str) -> None:
    """Print the pairs whose verdict moved since the rows of `earlier_path` (same set)."""
    if not rows:
        return
    with open(earlier_path, encoding="utf-8") as earlier_file:
        earlier = [r for r in map(json.loads, earlier_file) if r["set"] == rows[0]["set"]]
    if [(r["text_a"], r["text_b"]) for r in earlier] != [(r["text_a"], r["text_b"]) for r in rows]:
        raise SystemExit(f"{earlier_path} holds other pairs for {rows[0]['set']}")
    counts: Counter[str] = Counter()
    for before, now in zip(earlier, rows, strict=True):
        if all(before[field] == now[field] for field in ("hit", "guard", "same")):
            continue
        side = "positive" if now["label"] else "negative"
        change = (
            ("served" if now["hit"] else "no longer served")
            if before["hit"] != now["hit"]
            else "moved"
        )
        counts[f"{side} {change}"] += 1
        print(
            f"\n[{now['label']}] {change}: guard {before['guard']} -> {now['guard']}, same"
            f" {before['same']} -> {now['same']}, score {now['score']:.3f}\n"
            f"  A: {now['text_a']!r}\n  B: {now['text_b']!r}"
        )
    print(f"\n  verdicts moved: {dict(counts) or 'none'}")


if __name__ == "__main__":
    main()
