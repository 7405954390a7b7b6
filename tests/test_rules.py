"""Cache rules from the config, black-box: a running gateway with a rules file."""

from __future__ import annotations

import sqlite3
import subprocess
import time
import uuid

import pytest

from tools.processes import CACHEGATE, REPO

RULES = """
rules:
  - name: never-gpt-4o
    match: {model: "gpt-4o"}
    mode: off
  - name: no-embeddings-cached
    match: {endpoint: embeddings, namespace: fresh}
    mode: off
  - name: short-lived
    match: {namespace: "short-.*"}
    ttl: 120
    max_ttl: 600
"""


@pytest.fixture
def ruled(make_gateway, tmp_path):
    config = tmp_path / "rules.yaml"
    config.write_text(RULES)
    return make_gateway(args=["--config", str(config)])


def ask(gw, model: str, prompt: str, headers: dict | None = None):
    raw = gw.client().chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": prompt}], extra_headers=headers or {}
    )
    return raw.headers


def stored_ttl(gw, key: str) -> float:
    """expires_at - created_at of an entry, once the store has it (written behind)."""
    for _ in range(200):
        with sqlite3.connect(gw.data_dir / "entries.db") as db:
            row = db.execute(
                "SELECT expires_at - created_at FROM entries WHERE key = ?", (key,)
            ).fetchone()
        if row:
            return row[0]
        time.sleep(0.05)
    raise AssertionError(f"entry {key} never reached entries.db")


def test_a_rule_turns_caching_off_for_one_model_and_not_the_others(ruled):
    prompt = f"rules {uuid.uuid4().hex[:8]}"
    assert [ask(ruled, "gpt-4o", prompt)["x-cache-status"] for _ in range(2)] == ["BYPASS"] * 2
    assert [ask(ruled, "gpt-4o-mini", prompt)["x-cache-status"] for _ in range(2)] == [
        "MISS",
        "HIT",
    ]


def test_a_rule_applies_to_embeddings_by_endpoint_and_namespace(ruled):
    client = ruled.client()

    def embed(namespace: str) -> str:
        raw = client.embeddings.with_raw_response.create(
            model="text-embedding-3-small",
            input=[f"rule {uuid.uuid4().hex[:4]}", "a fixed item"],
            extra_headers={"X-Cache-Namespace": namespace},
        )
        return raw.headers["x-cache-items-cached"]

    assert [embed("fresh") for _ in range(2)] == ["0/2", "0/2"]
    assert [embed("other") for _ in range(2)][1] == "1/2"


def test_a_rule_per_namespace_sets_the_ttl_and_caps_the_header(ruled):
    prompt = f"ttl {uuid.uuid4().hex[:8]}"
    short = ask(ruled, "gpt-4o-mini", prompt, {"X-Cache-Namespace": "short-a"})
    capped = ask(
        ruled, "gpt-4o-mini", prompt, {"X-Cache-Namespace": "short-b", "X-Cache-TTL": "9999"}
    )
    default = ask(ruled, "gpt-4o-mini", prompt, {"X-Cache-Namespace": "long"})
    assert stored_ttl(ruled, short["x-cache-key"]) == pytest.approx(120, abs=1)
    assert stored_ttl(ruled, capped["x-cache-key"]) == pytest.approx(600, abs=1)
    assert stored_ttl(ruled, default["x-cache-key"]) == pytest.approx(7 * 86400, abs=1)


def test_a_bad_rule_is_refused_at_start_with_its_name(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("rules:\n  - name: typo\n    match: {model: gpt-4o}\n    mode: sometimes\n")
    result = subprocess.run(
        [*CACHEGATE, "serve", "--config", str(config), "--data-dir", str(tmp_path / "data")],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert result.returncode != 0
    assert "rules[0] (typo)" in result.stderr and "sometimes" in result.stderr
