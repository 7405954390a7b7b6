"""`cachegate eval`: precision and recall of the semantic tier on labeled pairs, black-box.

The protocol of BENCHMARKS.md, through a running gateway's HTTP API: for each pair a
fresh namespace; `text_a` is sent and stored; `text_b` is sent at the default settings
and a HIT on a label-1 pair is a true hit, on a label-0 pair a false hit. A second send
of `text_b` with `X-Cache-Threshold: 0` reads the calibrated score of the candidate, from
which the curve over thresholds follows. Raw all-MiniLM-L6-v2 cosine on the same pairs
is computed beside it, as the baseline every other semantic cache uses.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tools.pairs import Pair, load_pairs, select
from tools.processes import GatewayProcess, MockUpstreamProcess

CONCURRENCY = 16
CURVE = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
COSINE_CURVE = (0.7, 0.75, 0.8, 0.85, 0.9, 0.95)


@dataclass(slots=True)
class PairResult:
    label: int
    hit: bool  # at the gateway's default settings
    score: float | None  # calibrated score of the candidate, if one passed floor and guards
    kind: str | None = None  # the pair's kind, where the set labels one
    # What the asked text's language adds to a threshold (Calibration.margin of the
    # shipped verifier.json): the curve holds each pair to it.
    margin: float = 0.0


async def run_pairs(url: str, pairs: list[Pair], model: str) -> list[PairResult]:
    import aiohttp

    from embeddings.verifier import MODELS_DIR, Calibration

    # The shipped calibration (a gateway at --gateway is taken to run the same): the probe
    # at threshold 0 shows a score, not the bar its language held it to.
    calibration = Calibration.of(json.loads((MODELS_DIR / "verifier.json").read_text()))
    run_id = uuid.uuid4().hex[:8]
    results: list[PairResult | None] = [None] * len(pairs)
    slots = asyncio.Semaphore(CONCURRENCY)
    done = 0
    started = time.monotonic()

    async with aiohttp.ClientSession(headers={"Authorization": "Bearer sk-eval"}) as session:

        async def send(text: str, headers: dict[str, str]) -> tuple[str, float | None]:
            body = {"model": model, "messages": [{"role": "user", "content": text}]}
            async with session.post(
                f"{url}/v1/chat/completions", json=body, headers=headers
            ) as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(f"gateway answered {response.status} for {text!r}")
                score = response.headers.get("X-Cache-Similarity")
                return response.headers["X-Cache-Status"], float(score) if score else None

        async def one(i: int, pair: Pair) -> None:
            nonlocal done
            namespace = {"X-Cache-Namespace": f"eval-{run_id}-{i}"}
            async with slots:
                await send(pair.text_a, namespace)
                status, _ = await send(pair.text_b, {**namespace, "Cache-Control": "no-store"})
                probe, score = await send(
                    pair.text_b,
                    {**namespace, "X-Cache-Threshold": "0", "Cache-Control": "no-store"},
                )
            results[i] = PairResult(
                pair.label,
                status == "HIT",
                score if probe == "HIT" else None,
                pair.kind,
                calibration.margin(in_english(pair.text_b)),
            )
            done += 1
            if done % 1000 == 0:
                rate = done / (time.monotonic() - started)
                print(f"  {done}/{len(pairs)} pairs ({rate:.0f} pairs/s)", flush=True)

        await asyncio.gather(*(one(i, p) for i, p in enumerate(pairs)))
    return [r for r in results if r is not None]


def in_english(text: str) -> bool:
    """Whether the gateway reads the text as English (its margin is then none)."""
    from policies.prompts import ENGLISH, decompose

    return decompose(text).language == ENGLISH


def precision_recall(hits: np.ndarray, labels: np.ndarray) -> tuple[float, float, int]:
    count = int(hits.sum())
    precision = float(labels[hits].mean()) if count else 1.0
    recall = float((hits & (labels == 1)).sum() / max(1, (labels == 1).sum()))
    return precision, recall, count


def by_kind(results: list[PairResult]) -> dict[str, dict]:
    """Precision, recall and the share of negatives served, per kind of pair (for the
    prompt pairs: "instruction" negatives served is the poisoning figure)."""
    kinds: dict[str, list[PairResult]] = {}
    for result in results:
        if result.kind is not None:
            kinds.setdefault(result.kind, []).append(result)
    figures = {}
    for kind, mine in sorted(kinds.items()):
        labels = np.array([r.label for r in mine])
        hits = np.array([r.hit for r in mine])
        precision, recall, count = precision_recall(hits, labels)
        false_hits = int((hits & (labels == 0)).sum())
        figures[kind] = {
            "pairs": len(mine),
            "duplicates": int(labels.sum()),
            "precision": precision,
            "recall": recall,
            "hits": count,
            "false_hits": false_hits,
            "false_hit_rate": false_hits / max(1, int((labels == 0).sum())),
        }
    return figures


def raw_cosines(pairs: list[Pair]) -> np.ndarray:
    from embeddings.minilm import MiniLMEmbedder

    embedder = MiniLMEmbedder.load(threads=2)
    a = embedder.encode([p.text_a for p in pairs])
    b = embedder.encode([p.text_b for p in pairs])
    return (a * b).sum(axis=1)


def report(
    name: str, results: list[PairResult], cosines: np.ndarray, default_threshold: float | None
) -> dict:
    from embeddings.verifier import language_bar

    labels = np.array([r.label for r in results])
    hits = np.array([r.hit for r in results])
    scores = np.array([-1.0 if r.score is None else r.score for r in results])
    precision, recall, count = precision_recall(hits, labels)
    print(f"\n{name}: {len(results)} pairs ({int(labels.sum())} duplicates)")
    print(
        f"  at the shipped default: precision {precision:.3f}, recall {recall:.3f} ({count} hits)"
    )
    kinds = by_kind(results)
    if kinds:
        print(f"  {'kind':>15} {'precision':>9} {'recall':>7} {'hits':>5} {'false hit rate':>15}")
        for kind, k in kinds.items():
            print(
                f"  {kind:>15} {k['precision']:>9.3f} {k['recall']:>7.3f} {k['hits']:>5} "
                f"{k['false_hit_rate']:>9.3f} ({k['false_hits']} of "
                f"{k['pairs'] - k['duplicates']})"
            )
    curve = []
    print(
        f"  {'threshold':>9} {'precision':>9} {'recall':>7} {'hits':>6}   (cachegate, calibrated)"
    )
    for t in CURVE:
        bars = np.array([language_bar(t, result.margin) for result in results])
        p, r, n = precision_recall(scores >= bars, labels)
        curve.append({"threshold": t, "precision": p, "recall": r, "hits": n})
        print(f"  {t:>9.2f} {p:>9.3f} {r:>7.3f} {n:>6}")
    cosine_curve = []
    print(f"  {'cosine':>9} {'precision':>9} {'recall':>7} {'hits':>6}   (raw MiniLM cosine)")
    for t in COSINE_CURVE:
        p, r, n = precision_recall(cosines >= t, labels)
        cosine_curve.append({"threshold": t, "precision": p, "recall": r, "hits": n})
        print(f"  {t:>9.2f} {p:>9.3f} {r:>7.3f} {n:>6}")
    # Raw cosine at the same recall as cachegate's default: the like-for-like comparison.
    order = np.sort(cosines[labels == 1])[::-1]
    # The cosine of the k-th best duplicate, k = the true hits at the default (recall is a
    # ratio of counts: round, since truncating 0.0722 * 180 gives 12 of 13).
    matched = float(order[max(0, round(recall * len(order)) - 1)]) if len(order) and recall else 1.0
    p_matched, r_matched, _ = precision_recall(cosines >= matched, labels)
    print(
        f"  raw cosine at the same recall ({r_matched:.3f}, cosine >= {matched:.3f}): "
        f"precision {p_matched:.3f}"
    )
    return {
        "name": name,
        "pairs": len(results),
        "duplicates": int(labels.sum()),
        "default": {
            "threshold": default_threshold,
            "precision": precision,
            "recall": recall,
            "hits": count,
        },
        "by_kind": kinds,
        "curve": curve,
        "raw_cosine_curve": cosine_curve,
        "raw_cosine_at_same_recall": {
            "cosine": matched,
            "precision": p_matched,
            "recall": r_matched,
        },
    }


def run_eval(args: argparse.Namespace) -> None:
    if not Path(args.pairs).is_file():
        raise SystemExit(
            f"cachegate eval: no labeled pairs at {args.pairs}. The default is the shared "
            "QQP file (../shared/data/qqp_dev.jsonl, beside this repository); give another "
            "with --pairs FILE.jsonl (make eval PAIRS=FILE.jsonl), or use the pairs shipped "
            "in bench/data/"
        )
    pairs = select(load_pairs(args.pairs), args.split)
    if args.limit:
        pairs = pairs[: args.limit]
    name = f"{Path(args.pairs).name} ({args.split})"
    print(f"evaluating {len(pairs)} pairs of {name} through the gateway ...", flush=True)
    mock = gateway = None
    try:
        url = args.gateway
        if url is None:
            work = Path(tempfile.mkdtemp(prefix="cachegate-eval-"))
            mock = MockUpstreamProcess(work)
            gateway = GatewayProcess(work / "data", mock.url)
            url = gateway.url
        started = time.monotonic()
        results = asyncio.run(run_pairs(url.rstrip("/"), pairs, "gpt-4o-mini"))
        print(f"  {len(results)} pairs in {time.monotonic() - started:.0f}s", flush=True)
    finally:
        if gateway:
            gateway.stop()
        if mock:
            mock.stop()
    from embeddings.verifier import MODELS_DIR

    default = json.loads((MODELS_DIR / "verifier.json").read_text())["default_threshold"]
    result = report(name, results, raw_cosines(pairs), default)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
