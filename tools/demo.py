"""`cachegate demo`: offline, end to end, through the official openai client.

Starts the mock upstream and a gateway (real embedding model and verifier) on free
ports with a scratch data dir, replays a small day of traffic (repeats, rewordings,
streams, a namespace, an embeddings batch), then prints what the cache did.
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
    gateway = GatewayProcess(work / "data", mock.url, port=args.port)
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
            status, tier = raw.headers["x-cache-status"], raw.headers.get("x-cache-tier", "")
            statuses.append(status)
            score = raw.headers.get("x-cache-similarity")
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
            f"${stats['usd_spent']:.6f} spent (gpt-4o-mini list price); "
            f"{stats['time_saved_ms'] / 1000:.1f}s of upstream time saved"
        )
        if args.wait or (args.wait is None and sys.stdin.isatty()):
            print(f"\ndashboard: {gateway.url}/dashboard?token={gateway.admin_token}")
            print("the gateway keeps running for the dashboard; Ctrl-C to stop", flush=True)
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
