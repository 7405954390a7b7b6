"""Warming, export and import: `cachegate warm` through a running gateway, then `export`
and `import` move its entries to a fresh data dir (or between SQLite and Redis), where the
same requests are HITs."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

from tools.processes import CACHEGATE, REPO

WARM_KEY = "sk-warm-tenant"


def cachegate(*args: str, env: dict[str, str] | None = None, check: bool = True):
    return subprocess.run(
        [*CACHEGATE, *args], capture_output=True, text=True, cwd=REPO, env=env, check=check
    )


def questions(tag: str) -> list[str]:
    return [
        f"How do I rotate the API keys of project {tag} safely?",
        f"What is the refund policy for order {tag}?",
        f"Explain the retry budget of service {tag} in two sentences.",
    ]


def warm_file(tmp_path: Path, tag: str) -> Path:
    lines = [
        json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": q}]})
        for q in questions(tag)
    ]
    lines.append(
        json.dumps(
            {
                "path": "/v1/embeddings",
                "body": {"model": "text-embedding-3-small", "input": f"embed {tag}"},
            }
        )
    )
    lines.append("{not json")
    path = tmp_path / "warm.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def ask(gw, question: str, namespace: str = "default"):
    return gw.client(WARM_KEY).chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": question}],
        extra_headers={"X-Cache-Namespace": namespace},
    )


def test_warm_stores_then_finds_cached(make_gateway, tmp_path):
    gw = make_gateway()
    tag = uuid.uuid4().hex[:8]
    path = warm_file(tmp_path, tag)
    first = cachegate("warm", str(path), "--gateway", gw.url, "--api-key", WARM_KEY, check=False)
    assert first.returncode == 1, first.stderr  # the bad line failed
    assert "4 stored, 0 already cached, 1 failed" in first.stdout
    assert "line 5: not JSON" in first.stdout + first.stderr
    second = cachegate(
        "warm",
        str(path),
        "--gateway",
        gw.url,
        "--api-key",
        WARM_KEY,
        "--concurrency",
        "2",
        check=False,
    )
    assert "0 stored, 4 already cached, 1 failed" in second.stdout
    for question in questions(tag):
        assert ask(gw, question).headers["x-cache-status"] == "HIT"
