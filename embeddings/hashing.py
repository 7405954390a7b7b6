"""A tiny deterministic embedder for tests: hashed word unigrams and bigrams.

It knows nothing of meaning; texts that share words land close. Tests of the gateway's
plumbing use it so they run in milliseconds; every quality test uses the real model.
"""

from __future__ import annotations

import hashlib
import itertools
import re

import numpy as np

_WORDS = re.compile(r"[a-z0-9]+")


class HashingEmbedder:
    dim = 256

    def encode(self, texts: list[str], wide: bool = False) -> np.ndarray:
        rows = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            words = _WORDS.findall(text.lower())
            for gram in words + [f"{a} {b}" for a, b in itertools.pairwise(words)]:
                h = int.from_bytes(hashlib.blake2b(gram.encode(), digest_size=4).digest(), "big")
                rows[row, h % self.dim] += 1.0 if h & 1 << 31 else -1.0
            norm = np.linalg.norm(rows[row])
            if norm:
                rows[row] /= norm
        return rows
