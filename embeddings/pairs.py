"""Labeled question pairs: loading, and the by-question split shared by training and eval.

A pair belongs to the split of its connected component in the graph whose nodes are
questions and whose edges are pairs. Two pairs that share a question therefore always
land in the same split, so no held-out question is ever seen while tuning.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Split = Literal["train", "calib", "heldout", "all"]

# Percent of components per split; the rest (20%) is held out from all tuning.
TRAIN_PERCENT = 70
CALIB_PERCENT = 10


@dataclass(frozen=True, slots=True)
class Pair:
    text_a: str
    text_b: str
    label: int


def load_pairs(path: str | Path) -> list[Pair]:
    """Read JSON lines `{"text_a", "text_b", "label"}`; a malformed line is an error naming it."""
    pairs = []
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                pairs.append(Pair(str(row["text_a"]), str(row["text_b"]), int(row["label"])))
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
    return [p for p, s in zip(pairs, split_of_each(pairs), strict=True) if s == split]
