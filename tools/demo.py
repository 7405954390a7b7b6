"""`cachegate demo`: offline, end to end, through the official openai client.

Starts the mock upstream and a gateway (real embedding model and verifier) on free
ports with a scratch data dir, replays a small day of traffic (repeats, rewordings,
streams, a namespace, an embeddings batch, the Responses and Anthropic Messages APIs),
then prints what the cache did.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import urllib.request
from pathlib import Path

from tools.processes import GatewayProcess, MockUpstreamProcess

QUESTIONS = [
    ("How do I reverse a list in Python?", "What's the way to reverse a Python list?"),
    ("What is the capital of Australia?", "Which city is the capital of Australia?"),
    ("How can I improve my sleep quality?", "What are some ways to sleep better?"),
    ("Explain what a hash table is.", "Can you explain what a hash table is?"),
    ("What causes inflation?", "What are the causes of inflation?"),
    ("How do I center a div in CSS?", "How can I center a div using CSS?"),
]
# Alike in words, different in meaning: the verifier must not serve these from cache.
TRAPS = ["What is the capital of Austria?", "How do I reverse a string in Python?"]


def run_demo(args: argparse.Namespace) -> None:
    try:
        import openai
    except ImportError:
        raise SystemExit(
            "cachegate demo drives the official openai client: pip install openai"
        ) from None

    work = Path(tempfile.mkdtemp(prefix="cachegate-demo-"))
    print(f"starting the mock upstream and the gateway (data in {work}) ...", flush=True)
    mock = MockUpstreamProcess(work, latency_ms=400)
    # The mock speaks Anthropic's API too, under its root URL.
    anthropic_root = mock.url.removesuffix("/v1")
    gateway = GatewayProcess(
        work / "data", mock.url, args=["--anthropic-upstream", anthropic_root], port=args.port
    )
    try:
        client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="sk-demo", max_retries=0)
        statuses: list[str] = []

        def ask(text: str, stream: bool = False, namespace: str = "default") -> None:
            headers = {"X-Cache-Namespace": namespace}
            raw = client.chat.completions.with_raw_response.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": text}],
                stream=stream,
                extra_headers=headers,
            )
            if stream:
                list(raw.parse())
            show(raw.headers, text)

        def show(headers, text: str) -> None:
            status, tier = headers["x-cache-status"], headers.get("x-cache-tier", "")
            statuses.append(status)
            score = headers.get("x-cache-similarity")
            print(f"  {status:<7} {tier:<9} {score or '':<7} {text}")

        print("\nfirst time each question is asked (misses):")
        for original, _ in QUESTIONS:
            ask(original)
        print("\nthe same questions again, some streamed (exact hits):")
        for i, (original, _) in enumerate(QUESTIONS):
            ask(original, stream=i % 2 == 0)
        print("\nreworded questions (semantic hits, verified):")
        for _, reworded in QUESTIONS:
            ask(reworded)
        print("\nlook-alike questions that mean something else (must miss):")
        for trap in TRAPS:
            ask(trap)
        print("\nanother team's namespace does not share answers:")
        ask(QUESTIONS[0][0], namespace="team-b")
        batch = client.embeddings.with_raw_response.create(
            model="text-embedding-3-small", input=["alpha", "beta", "gamma"]
        )
        again = client.embeddings.with_raw_response.create(
            model="text-embedding-3-small", input=["beta", "delta", "alpha"]
        )
        print(
            f"\nembeddings: first batch {batch.headers['x-cache-status']}, second batch "
            f"reused {again.headers['x-cache-items-cached']} items"
        )

        print("\nthe Responses API and Anthropic's Messages API, cached the same way:")
        for stream, text in (
            (False, QUESTIONS[3][0]),
            (True, QUESTIONS[3][0]),
            (False, QUESTIONS[3][1]),
        ):
            raw = client.responses.with_raw_response.create(
                model="gpt-4o-mini", input=text, stream=stream
            )
            if stream:
                list(raw.parse())
            show(raw.headers, f"responses{' (stream)' if stream else ''}: {text}")
        for text in (QUESTIONS[4][0], QUESTIONS[4][0], QUESTIONS[4][1]):
            show(ask_anthropic(gateway.url, text), f"messages: {text}")

        stats_request = urllib.request.Request(
            f"{gateway.url}/cache/stats?since=1h", headers=gateway.admin
        )
        with urllib.request.urlopen(stats_request, timeout=10) as r:
            stats = json.load(r)
        saved_tokens = stats["tokens_saved"]["prompt"] + stats["tokens_saved"]["completion"]
        print(
            f"\nhit rate {stats['hit_rate'] * 100:.0f}% ({stats['hits']} hits: "
            f"{stats['exact_hits']} exact, {stats['semantic_hits']} semantic; "
            f"{stats['misses']} misses)"
        )
        print(
            f"tokens saved {saved_tokens:,}; ${stats['usd_saved']:.6f} saved, "
            f"${stats['usd_spent']:.6f} spent (list prices); "
            f"{stats['time_saved_ms'] / 1000:.1f}s of upstream time saved"
        )
        if args.wait or (args.wait is None and sys.stdin.isatty()):
            print(f"\ndashboard: {gateway.url}/dashboard?token={gateway.admin_token}")
            print("the gateway keeps running for the dashboard; Ctrl-C to stop", flush=True)
            assert gateway.process is not None  # its constructor started it
            with contextlib.suppress(KeyboardInterrupt):
                gateway.process.wait()
        else:
            print(
                "\nthe demo gateway has stopped; `cachegate demo --wait` keeps it serving "
                "for the dashboard until Ctrl-C"
            )
    finally:
        gateway.stop()
        mock.stop()


def ask_anthropic(url: str, text: str):
    """One Anthropic Messages request, in its own wire format (no SDK needed)."""
    body = {
        "model": "claude-haiku-4-5",
        "max_tokens": 256,
        "messages": [{"role": "user", "content": text}],
    }
    request = urllib.request.Request(
        f"{url}/v1/messages",
        data=json.dumps(body).encode(),
        headers={
            "x-api-key": "sk-ant-demo",
            "anthropic-version": "2023-06-01",
            "Content-Type": "application/json",
        },
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        response.read()
        return response.headers
