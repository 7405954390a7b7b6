"""Soak: hold a mixed load of hits and misses on a gateway and watch memory and errors.

    .venv/bin/python scripts/soak.py --minutes 10

Starts the mock upstream (20 ms latency) and a gateway with the shipped defaults (real
embedding model and verifier) in a scratch dir, then drives it with `--concurrency`
workers: 60% repeats of known questions (exact hits), 20% rewordings (semantic tier),
15% questions from a pool of 5,000 others (misses until each is stored once, then hits)
and 5% never-seen questions sent with `Cache-Control: no-store` (misses forever, never
stored). So the stored data stops growing after a few minutes while misses continue,
and the resident memory should then stay flat. Every 30 s it prints throughput, error
count and the gateway's resident memory; at the end, the memory trend and whether the
gateway's ledger (/cache/stats) counted exactly the requests sent.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import tempfile
import time
from pathlib import Path

import aiohttp

from tools.processes import GatewayProcess, MockUpstreamProcess

KNOWN = [f"How do I configure feature number {i} of the billing system?" for i in range(300)]
REWORDED = [
    f"What is the way to set up feature number {i} of the billing system?" for i in range(300)
]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def drive(
    url: str, pid: int, minutes: float, concurrency: int, admin: dict[str, str]
) -> None:
    deadline = time.monotonic() + minutes * 60
    counts = {"requests": 0, "errors": 0}
    statuses: dict[str, int] = {}
    samples: list[tuple[float, float]] = []
    rng = random.Random(1)
    started = time.monotonic()

    async with aiohttp.ClientSession(headers={"Authorization": "Bearer sk-soak"}) as session:

        async def worker() -> None:
            while time.monotonic() < deadline:
                roll = rng.random()
                headers = {}
                if roll < 0.6:
                    text = rng.choice(KNOWN)
                elif roll < 0.8:
                    text = rng.choice(REWORDED)
                elif roll < 0.95:
                    text = f"Tell me about catalogue item {rng.randrange(5000)} in detail, please."
                else:
                    text = f"A question never asked before, number {rng.getrandbits(48)}?"
                    headers = {"Cache-Control": "no-store"}
                body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}
                try:
                    async with session.post(
                        f"{url}/v1/chat/completions", json=body, headers=headers
                    ) as r:
                        await r.read()
                        status = r.headers.get("X-Cache-Status", str(r.status))
                        statuses[status] = statuses.get(status, 0) + 1
                        counts["errors"] += r.status != 200
                except aiohttp.ClientError:
                    counts["errors"] += 1
                counts["requests"] += 1

        async def report() -> None:
            last_count, last_time = 0, time.monotonic()
            while time.monotonic() < deadline:
                await asyncio.sleep(30)
                now = time.monotonic()
                rate = (counts["requests"] - last_count) / (now - last_time)
                last_count, last_time = counts["requests"], now
                memory = rss_mb(pid)
                samples.append((now - started, memory))
                print(
                    f"t={now - started:5.0f}s  {rate:7.1f} req/s  errors {counts['errors']}  "
                    f"rss {memory:7.1f} MB  {statuses}",
                    flush=True,
                )

        await asyncio.gather(report(), *(worker() for _ in range(concurrency)))
        # The ledger must have counted every request the workers sent, no more, no fewer.
        async with session.get(f"{url}/cache/stats", params={"since": "all"}, headers=admin) as r:
            ledger = await r.json()
    elapsed = time.monotonic() - started
    print(
        f"\n{counts['requests']} requests in {elapsed:.0f}s ({counts['requests'] / elapsed:.1f} "
        f"req/s), {counts['errors']} errors; statuses {statuses}"
    )
    counted = {k: ledger[k] for k in ("requests", "hits", "misses")}
    sent = {
        "requests": counts["requests"],
        "hits": statuses.get("HIT", 0),
        "misses": statuses.get("MISS", 0),
    }
    agrees = counted == sent
    print(f"ledger: {counted} ({'matches' if agrees else f'DOES NOT match {sent}'} what was sent)")
    if len(samples) >= 4:
        settled = samples[len(samples) // 4]  # after warm-up: the memory LRU fills first
        print(
            f"memory: {samples[0][1]:.1f} MB at {samples[0][0]:.0f}s, {settled[1]:.1f} MB at "
            f"{settled[0]:.0f}s, {samples[-1][1]:.1f} MB at {samples[-1][0]:.0f}s "
            f"(max {max(m for _, m in samples):.1f} MB)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--ledger-retention-days",
        type=float,
        default=None,
        help="a tiny one (0.0007 = 1 minute) shows the ledger rolled up as it runs",
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cachegate-soak-"))
    mock = MockUpstreamProcess(work, latency_ms=20)
    env = {}
    if args.ledger_retention_days is not None:
        env["CACHEGATE_LEDGER_RETENTION_DAYS"] = str(args.ledger_retention_days)
    gateway = GatewayProcess(work / "data", mock.url, env)
    try:
        assert gateway.process is not None
        asyncio.run(
            drive(gateway.url, gateway.process.pid, args.minutes, args.concurrency, gateway.admin)
        )
    finally:
        gateway.stop()
        mock.stop()
    print_ledger_size(work / "data" / "ledger.db")


def print_ledger_size(path: Path) -> None:
    """The ledger file's size and what it holds: recent rows, and rolled-up day totals."""
    conn = sqlite3.connect(path)
    rows, requests = conn.execute(
        "SELECT count(*), coalesce(sum(requests), 0) FROM requests"
    ).fetchone()
    days, rolled = conn.execute(
        "SELECT count(*), coalesce(sum(requests), 0) FROM day_totals"
    ).fetchone()
    conn.close()
    print(
        f"ledger.db: {path.stat().st_size / 1024:.0f} KiB; {rows} rows for {requests} recent "
        f"requests, {days} day-total rows for {rolled} rolled-up requests"
    )


if __name__ == "__main__":
    main()
