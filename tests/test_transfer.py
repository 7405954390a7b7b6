"""Warming, export and import: `cachegate warm` through a running gateway, then `export`
and `import` move its entries to a fresh data dir (or between SQLite and Redis), where the
same requests are HITs."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest
from conftest import FAST_SEMANTIC

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
        assert ask(gw, question, "docs").headers["x-cache-status"] == "MISS"  # another namespace

    # --namespace: the entries of that namespace (the docs ones, stored by the asks above)
    third = cachegate(
        "warm",
        str(path),
        "--gateway",
        gw.url,
        "--api-key",
        WARM_KEY,
        "--namespace",
        "docs",
        check=False,
    )
    assert "1 stored, 3 already cached, 1 failed" in third.stdout  # only the embedding is new


def paraphrase_pair(tag: str) -> tuple[str, str]:
    """A question and a rewording of it that the test embedder puts near (see test_redis)."""
    return (
        f"How do I reset the password of my home wifi router quickly? Ref {tag}",
        f"How do I reset the password of my home wifi router quickly please? Ref {tag}",
    )


def fast_env() -> dict[str, str]:
    return {**os.environ, **FAST_SEMANTIC}


def export_to(path: Path, *where: str) -> list[dict]:
    out = cachegate("export", *where, env=fast_env())
    path.write_text(out.stdout)
    assert "exported" in out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


def import_from(path: Path, *where: str) -> str:
    return cachegate("import", str(path), *where, env=fast_env()).stdout


def warmed(gw, tmp_path: Path, tag: str) -> tuple[list[str], str, dict[str, str]]:
    """Warm `gw` with a few questions; the questions, a rewording of the first, and
    the answers by question."""
    original, reworded = paraphrase_pair(tag)
    asked = [original, *questions(tag)]
    path = tmp_path / f"warm-{tag}.jsonl"
    path.write_text(
        "\n".join(
            json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": q}]})
            for q in asked
        )
    )
    cachegate("warm", str(path), "--gateway", gw.url, "--api-key", WARM_KEY)
    answers = {q: ask(gw, q).parse().choices[0].message.content for q in asked}
    return asked, reworded, answers


def assert_serves(gw, asked: list[str], reworded: str, answers: dict[str, str]) -> None:
    """`gw` answers every warmed question, and the rewording, from its cache."""
    for question in asked:
        raw = ask(gw, question)
        assert (raw.headers["x-cache-status"], raw.headers["x-cache-tier"]) == ("HIT", "exact")
        assert raw.parse().choices[0].message.content == answers[question]
    raw = ask(gw, reworded)
    assert (raw.headers["x-cache-status"], raw.headers["x-cache-tier"]) == ("HIT", "semantic")
    assert raw.parse().choices[0].message.content == answers[asked[0]]


def test_warm_export_import_into_an_empty_data_dir(make_gateway, mock_upstream, tmp_path):
    source = make_gateway()
    tag = uuid.uuid4().hex[:8]
    asked, reworded, answers = warmed(source, tmp_path, tag)
    exported = export_to(tmp_path / "export.jsonl", "--data-dir", str(source.data_dir))
    assert len(exported) == len(asked)  # while the source gateway serves its data dir
    line = next(e for e in exported if e["request"]["text"] and tag in e["request"]["text"])
    assert {"key", "tenant", "namespace", "endpoint", "model", "tags", "created_at"} <= set(line)
    assert line["expires_at"] > line["created_at"] and line["response"]["choices"]

    empty = tmp_path / "copy"
    said = import_from(tmp_path / "export.jsonl", "--data-dir", str(empty))
    assert f"imported {len(asked)} entries" in said
    calls = mock_upstream.calls("chat")
    copy = make_gateway(data_dir=empty)
    assert_serves(copy, asked, reworded, answers)
    assert mock_upstream.calls("chat") == calls
    again = export_to(tmp_path / "again.jsonl", "--data-dir", str(empty))
    assert sorted((e["key"], e["expires_at"]) for e in again) == sorted(
        (e["key"], e["expires_at"]) for e in exported
    )


def test_import_refuses_a_data_dir_a_gateway_serves(make_gateway, tmp_path):
    gw = make_gateway()
    path = tmp_path / "nothing.jsonl"
    path.write_text("")
    out = cachegate("import", str(path), "--data-dir", str(gw.data_dir), check=False)
    assert out.returncode != 0 and "stop it to import" in out.stderr


@pytest.mark.redis
def test_entries_move_between_sqlite_and_redis(make_gateway, mock_upstream, tmp_path):
    from test_redis import RedisServer

    server = RedisServer(tmp_path / "redis")
    try:
        source = make_gateway()
        tag = uuid.uuid4().hex[:8]
        asked, reworded, answers = warmed(source, tmp_path, tag)
        export_to(tmp_path / "sqlite.jsonl", "--data-dir", str(source.data_dir))
        import_from(tmp_path / "sqlite.jsonl", "--backend", server.url)
        calls = mock_upstream.calls("chat")
        replica = make_gateway(args=["--backend", server.url])
        assert_serves(replica, asked, reworded, answers)

        exported = export_to(tmp_path / "redis.jsonl", "--backend", server.url)
        assert len(exported) == len(asked)
        back = tmp_path / "back"
        import_from(tmp_path / "redis.jsonl", "--data-dir", str(back))
        assert_serves(make_gateway(data_dir=back), asked, reworded, answers)
        assert mock_upstream.calls("chat") == calls
    finally:
        server.kill()


def test_import_into_a_data_dir_that_cannot_be_written_says_so(tmp_path):
    path = tmp_path / "nothing.jsonl"
    path.write_text("")
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    out = cachegate("import", str(path), "--data-dir", str(blocked / "data"), check=False)
    assert out.returncode != 0 and "nothing imported" in out.stderr
    assert "imported" not in out.stdout


def test_import_with_the_semantic_tier_off_keeps_the_texts(tmp_path):
    entry = {
        "key": "0" * 32,
        "tenant": "t_import",
        "namespace": "default",
        "endpoint": "chat",
        "model": "gpt-4o-mini",
        "created_at": 1.0,
        "expires_at": 4e9,
        "request": {"context_key": "1" * 32, "text": "What is the refund policy?"},
        "response": {"choices": [{"index": 0, "message": {"content": "30 days"}}]},
    }
    path = tmp_path / "export.jsonl"
    path.write_text(json.dumps(entry) + "\n")
    env = {**fast_env(), "CACHEGATE_SEMANTIC_ENABLED": "false"}
    out = cachegate("import", str(path), "--data-dir", str(tmp_path / "data"), env=env)
    assert "imported 1 entries" in out.stdout
    again = cachegate("export", "--data-dir", str(tmp_path / "data"), env=env)
    assert json.loads(again.stdout)["request"]["text"] == entry["request"]["text"]
