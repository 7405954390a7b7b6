"""Labeled question pairs: loading, the by-question split shared by training and eval, and
the pairs that the labels imply (for training).

A pair belongs to the split of its connected component in the graph whose nodes are
questions and whose edges are pairs. Two pairs that share a question therefore always
land in the same split, so no held-out question is ever seen while tuning.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

# "tune" and "report": a set that names its own split in a "split" field (the prompt
# pairs, split by topic); the others are the by-question split below.
Split = Literal["train", "calib", "heldout", "tune", "report", "all"]

# Percent of components per split; the rest (20%) is held out from all tuning.
TRAIN_PERCENT = 70
CALIB_PERCENT = 10


@dataclass(frozen=True, slots=True)
class Pair:
    text_a: str
    text_b: str
    label: int
    kind: str | None = None  # what sort of pair ("instruction", "coding", ...), if labeled
    split: str | None = None  # the split the set itself assigns, if any


def load_pairs(path: str | Path) -> list[Pair]:
    """Read JSON lines `{"text_a", "text_b", "label"}` (and optionally "kind" and
    "split"); a malformed line is an error naming it."""
    pairs = []
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                pairs.append(
                    Pair(
                        str(row["text_a"]),
                        str(row["text_b"]),
                        int(row["label"]),
                        str(row["kind"]) if row.get("kind") else None,
                        str(row["split"]) if row.get("split") else None,
                    )
                )
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}:{number}: not a labeled pair ({exc})") from exc
    return pairs


def _normalize(question: str) -> str:
    return " ".join(question.lower().split())


class Groups:
    """Union-find over texts: which texts some chain of joined pairs connects."""

    def __init__(self) -> None:
        self._parent: dict[str, str] = {}

    def root(self, node: str) -> str:
        parent = self._parent
        parent.setdefault(node, node)
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    def join(self, a: str, b: str) -> None:
        a, b = self.root(a), self.root(b)
        if a != b:
            self._parent[max(a, b)] = min(a, b)


def split_of_each(pairs: list[Pair]) -> list[str]:
    """The split ("train", "calib" or "heldout") of every pair, deterministic in the texts."""
    groups = Groups()
    for pair in pairs:
        groups.join(_normalize(pair.text_a), _normalize(pair.text_b))
    splits = []
    for pair in pairs:
        component = groups.root(_normalize(pair.text_a))
        bucket = int.from_bytes(hashlib.sha1(component.encode()).digest()[:4], "big") % 100
        if bucket < TRAIN_PERCENT:
            splits.append("train")
        elif bucket < TRAIN_PERCENT + CALIB_PERCENT:
            splits.append("calib")
        else:
            splits.append("heldout")
    return splits


def select(pairs: list[Pair], split: Split) -> list[Pair]:
    if split == "all":
        return pairs
    if split in ("tune", "report"):
        return [p for p in pairs if p.split == split]
    return [p for p, s in zip(pairs, split_of_each(pairs), strict=True) if s == split]


def sharing_no_question(pairs: list[Pair], apart: list[Pair]) -> list[Pair]:
    """The pairs none of whose questions is in `apart` (compared as split_of_each does)."""
    kept_apart = {_normalize(t) for p in apart for t in (p.text_a, p.text_b)}
    return [
        p
        for p in pairs
        if _normalize(p.text_a) not in kept_apart and _normalize(p.text_b) not in kept_apart
    ]


def closure_pairs(pairs: list[Pair], rng: random.Random, per_group: int) -> list[Pair]:
    """Pairs the labels imply but do not list: duplicates of duplicates are duplicates, and
    a duplicate of a question is not the same as that question's non-duplicates.

    Quora pairs share questions, so the training split holds groups of duplicates; each
    group gives up to `per_group` new pairs of each kind, so large groups do not dominate.
    """
    duplicates = Groups()
    for pair in pairs:
        if pair.label:
            duplicates.join(pair.text_a, pair.text_b)
    groups: dict[str, list[str]] = {}
    for text in sorted({t for p in pairs for t in (p.text_a, p.text_b)}):
        groups.setdefault(duplicates.root(text), []).append(text)
    seen = {frozenset((p.text_a, p.text_b)) for p in pairs}
    extra: list[Pair] = []

    def add(candidates: list[tuple[str, str]], label: int) -> None:
        fresh = [c for c in candidates if frozenset(c) not in seen]
        for a, b in rng.sample(fresh, min(per_group, len(fresh))):
            seen.add(frozenset((a, b)))
            extra.append(Pair(a, b, label))

    for members in groups.values():
        add([(a, b) for i, a in enumerate(members) for b in members[i + 1 :]], 1)
    for pair in pairs:
        root_a, root_b = duplicates.root(pair.text_a), duplicates.root(pair.text_b)
        if not pair.label and root_a != root_b:  # labels that contradict the groups imply nothing
            add([(a, b) for a in groups[root_a] for b in groups[root_b]], 0)
    return extra
