"""The `cachegate` command. Every flag also reads CACHEGATE_<FLAG>; flags beat environment."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from gateway.config import Config, ConfigError, load_config

Read = TypeVar("Read")


def apply_environment(parser: argparse.ArgumentParser) -> None:
    """Every flag --some-flag reads CACHEGATE_SOME_FLAG when it is not given (INTERFACE.md)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for subparser in action.choices.values():
                apply_environment(subparser)
            continue
        flag = next((o for o in action.option_strings if o.startswith("--")), None)
        value = os.environ.get("CACHEGATE_" + action.dest.upper()) if flag else None
        if flag in (None, "--help", "--config") or not value:
            continue  # --config has CACHEGATE_CONFIG, read with the config layers
        if action.nargs == 0:  # a switch: true, 1, yes or on
            action.default = value.lower() in ("1", "true", "yes", "on")
        else:
            action.default = action.type(value) if callable(action.type) else value
        action.required = False


def add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir", default=None, help="where entries and the ledger live (default ./.cachegate/)"
    )
    parser.add_argument("--config", default=None, help="YAML config file")


def add_backend(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backend", default=None, help="sqlite (the data dir, default) or redis://HOST:PORT/DB"
    )


def config_from(args: argparse.Namespace, **flags: Any) -> Config:
    try:
        return load_config(args.config, overrides={"data_dir": args.data_dir, **flags})
    except ConfigError as exc:
        raise SystemExit(f"cachegate: {exc}") from None


def cmd_serve(args: argparse.Namespace) -> None:
    from gateway.app import serve

    config = config_from(
        args,
        host=args.host,
        port=args.port,
        upstream=args.upstream,
        anthropic_upstream=args.anthropic_upstream,
        backend=args.backend,
    )
    logging.getLogger().setLevel(config.log_level.upper())
    serve(config)


def cmd_stats(args: argparse.Namespace) -> None:
    from gateway.ledger import query_stats

    config = config_from(args, backend=args.backend)
    conn = open_ledger(config)
    try:
        result = query_stats(conn, args.since, args.by)
    except ValueError as exc:
        raise SystemExit(f"cachegate: {exc}") from None
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print_stats_table(result)


def read_redis(config: Config, what: str, read: Callable[[str], Coroutine[Any, Any, Read]]) -> Read:
    """`read(backend URL)` run to its end; a Redis that cannot be read stops the command
    with one line naming `what`."""
    import asyncio

    from redis.exceptions import RedisError

    try:
        return asyncio.run(read(config.backend))
    except (RedisError, ValueError) as exc:
        raise SystemExit(f"cachegate: cannot read the {what} in {config.backend}: {exc}") from None


def open_ledger(config: Config) -> sqlite3.Connection:
    """The ledger table of `config.backend`: the SQLite file, or a copy of Redis' rows."""
    if config.backend != "sqlite":
        from gateway.redis.ledger import read_shared_ledger

        return read_redis(config, "ledger", read_shared_ledger)
    path = config.data_dir / "ledger.db"
    if not path.exists():
        raise SystemExit(
            f"cachegate: no ledger at {path}; has the gateway served any request "
            "with this --data-dir?"
        )
    from gateway.ledger import open_read_only

    return open_read_only(path)


def printable(text: str) -> str:
    """`text` with what a terminal would act on (escape sequences, control characters)
    written out as escapes: model names and namespaces come from any caller."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def print_stats_table(result: dict[str, Any]) -> None:
    rows = [("all", result)] + [(printable(str(g["name"])), g) for g in result.get("groups", [])]
    header = (
        f"{'':<24} {'requests':>9} {'hits':>7} {'exact':>7} {'semantic':>8} {'misses':>7} "
        f"{'hit rate':>8} {'tokens saved':>13} {'USD saved':>11} {'USD spent':>11} {'bad':>5}"
    )
    print(f"since {result['since']}" + (f", by {result['by']}" if result.get("by") else ""))
    print(header)
    for name, row in rows:
        saved = row["tokens_saved"]["prompt"] + row["tokens_saved"]["completion"]
        print(
            f"{name[:24]:<24} {row['requests']:>9} {row['hits']:>7} {row['exact_hits']:>7} "
            f"{row['semantic_hits']:>8} {row['misses']:>7} {row['hit_rate'] * 100:>7.1f}% "
            f"{saved:>13,} {row['usd_saved']:>11.4f} {row['usd_spent']:>11.4f} "
            f"{row['reported_bad']:>5}"
        )
    if result["unpriced_models"]:
        unpriced = ", ".join(printable(model) for model in result["unpriced_models"])
        print(f"unpriced models (counted at $0): {unpriced}")


def cmd_analyze(args: argparse.Namespace) -> None:
    """The ledger and the entries, read as they are (also while a gateway serves them)."""
    from gateway.analysis import Settings, analyze, read_ledger, render, summarize_entries

    config = config_from(args, backend=args.backend)
    now = time.time()
    conn = open_ledger(config)
    try:
        rows = read_ledger(conn, args.since, now)
    except ValueError as exc:
        raise SystemExit(f"cachegate: {exc}") from None
    entries = read_entries(config)
    report = analyze(
        rows,
        None if entries is None else summarize_entries(entries, now),
        Settings(semantic_threshold(config), config.default_ttl, config.memory_bytes),
        args.since,
        now,
    )
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(render(report, printable))


def read_entries(config: Config) -> list[tuple[int, int, float]] | None:
    """(hits, size, expires_at) of every stored entry; None where there is no store yet."""
    if config.backend != "sqlite":
        from gateway.redis.store import read_entry_fields

        return read_redis(config, "entries", read_entry_fields)
    path = config.data_dir / "entries.db"
    if not path.exists():
        return None
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return conn.execute("SELECT hits, size, expires_at FROM entries").fetchall()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise SystemExit(f"cachegate: cannot read the entries in {path}: {exc}") from None


def semantic_threshold(config: Config) -> float:
    """The threshold requests get unless they send X-Cache-Threshold, without loading the
    models: the configured one, or the verifier's calibrated default."""
    if config.semantic.threshold is not None:
        return config.semantic.threshold
    if config.semantic.verifier == "cosine":
        from gateway.app import COSINE_DEFAULT_THRESHOLD

        return COSINE_DEFAULT_THRESHOLD
    from embeddings.verifier import shipped_threshold

    return shipped_threshold()


def cmd_purge(args: argparse.Namespace) -> None:
    """Purge through the running gateway that holds the entries (so its memory forgets
    too): with SQLite, the one serving the data dir; with Redis, any replica at the
    configured address. With no gateway serving the SQLite data dir, edit it directly."""
    import urllib.error
    import urllib.request

    from gateway import datadir
    from gateway.admin import purge_filter
    from gateway.backends import StoreLimits
    from gateway.store import SqliteStore

    fields = {
        "all": args.all,
        "namespace": args.namespace,
        "model": args.model,
        "older_than": args.older_than,
        "key": args.key,
        "tag": args.tag,
        "prompt": args.prompt,
    }
    fields = {k: v for k, v in fields.items() if v}
    try:
        where = purge_filter(fields)
    except ValueError as exc:
        raise SystemExit(f"cachegate: {exc}") from None
    config = config_from(args)
    if config.backend == "sqlite":
        if not (config.data_dir / "entries.db").is_file():
            raise SystemExit(
                f"cachegate: no entries at {config.data_dir / 'entries.db'}; is --data-dir "
                "the data dir of a gateway?"
            )
        gateway = datadir.serving_gateway(config.data_dir)
        if gateway is None and datadir.held(config.data_dir):
            raise SystemExit(
                f"cachegate: a running gateway holds {config.data_dir} but says nowhere "
                "where it listens; purge through its POST /cache/purge"
            )
    else:
        gateway = f"http://{config.host}:{config.port}"
    if gateway is not None:
        url = f"{gateway}/cache/purge"
        request = urllib.request.Request(
            url,
            data=json.dumps(fields).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        token = config.admin_token or datadir.read_admin_token(config.data_dir)
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                print(f"purged {json.load(response)['purged']} entries (through {url})")
                return
        except urllib.error.HTTPError as exc:  # the gateway answered, and refused
            answer = exc.read().decode(errors="replace")[:300]
            raise SystemExit(f"cachegate: {url} answered {exc.code}: {answer}") from None
        except (urllib.error.URLError, ConnectionError) as exc:
            if config.backend != "sqlite":
                raise SystemExit(
                    f"cachegate: no gateway answered at {url} ({exc}); with a shared backend, "
                    "purge through a running replica (every replica forgets what one purges)"
                ) from None
            raise SystemExit(
                f"cachegate: the gateway serving {config.data_dir} ({url}) did not answer "
                f"({exc}); purge when it answers, or stop it and purge the files"
            ) from None
    import asyncio

    async def purge_file() -> int:
        store = SqliteStore(config.data_dir / "entries.db", StoreLimits.of(config))
        keys = await store.delete(where, time.time())
        await store.close()
        return len(keys)

    print(f"purged {asyncio.run(purge_file())} entries from {config.data_dir / 'entries.db'}")


def cmd_warm(args: argparse.Namespace) -> None:
    """Send a file of requests through a running gateway; a summary of what was stored."""
    import asyncio
    from pathlib import Path

    from gateway import datadir
    from gateway.app import base_url
    from gateway.warm import summary, warm

    config = config_from(args)
    gateway = args.gateway or (
        datadir.serving_gateway(config.data_dir) if config.backend == "sqlite" else None
    )
    gateway = gateway or base_url(config.host, config.port)
    try:
        counts = asyncio.run(
            warm(Path(args.file), gateway, args.concurrency, args.namespace, args.api_key)
        )
    except OSError as exc:
        raise SystemExit(f"cachegate: cannot read {args.file}: {exc.strerror}") from None
    print(f"{summary(counts)} (through {gateway})")
    if counts["failed"]:
        raise SystemExit(1)


def cmd_export(args: argparse.Namespace) -> None:
    """Every live entry to stdout, one JSON object a line (gateway/transfer.py)."""
    import asyncio

    from redis.exceptions import RedisError

    from gateway.transfer import export

    config = config_from(args, backend=args.backend)
    try:
        written = asyncio.run(export(config, sys.stdout, args.namespace, args.tag, time.time()))
    except (sqlite3.Error, RedisError) as exc:
        raise SystemExit(f"cachegate: cannot read the entries of {where(config)}: {exc}") from None
    print(f"exported {written} entries from {where(config)}", file=sys.stderr)


def cmd_import(args: argparse.Namespace) -> None:
    """Load an export file into a data dir or backend, vectors recomputed."""
    import asyncio
    from pathlib import Path

    from redis.exceptions import RedisError

    from gateway.transfer import import_entries

    config = config_from(args, backend=args.backend)
    try:
        counts = asyncio.run(import_entries(config, Path(args.file), time.time()))
    except OSError as exc:
        raise SystemExit(f"cachegate: cannot read {args.file}: {exc.strerror}") from None
    except RedisError as exc:
        raise SystemExit(f"cachegate: cannot write to {config.backend}: {exc}") from None
    print(
        f"imported {counts['imported']} entries into {where(config)}; skipped "
        f"{counts['expired']} expired, {counts['failed']} lines that are not entries"
    )
    if counts["failed"]:
        raise SystemExit(1)


def where(config: Config) -> str:
    return str(config.data_dir) if config.backend == "sqlite" else config.backend


def cmd_mock_upstream(args: argparse.Namespace) -> None:
    from tools.mock_upstream import run_mock_upstream

    run_mock_upstream(args.host, int(args.port), float(args.latency_ms))


def cmd_demo(args: argparse.Namespace) -> None:
    from tools.demo import run_demo

    run_demo(args)


def cmd_eval(args: argparse.Namespace) -> None:
    from tools.evaluate import run_eval

    run_eval(args)


def cmd_bench(args: argparse.Namespace) -> None:
    from tools.benchmark import run_bench

    run_bench(args)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="cachegate",
        description=(
            "OpenAI-compatible caching gateway: exact and verified semantic caching, with savings "
            "analytics. Every flag also reads CACHEGATE_<FLAG> (flags beat environment, "
            "environment beats the config file)."
        ),
    )
    commands = top.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the gateway")
    add_data_dir(serve)
    serve.add_argument("--host", default=None, help="listen address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="listen port (default 8080)")
    serve.add_argument(
        "--upstream", default=None, help="upstream base URL (default https://api.openai.com/v1)"
    )
    serve.add_argument(
        "--anthropic-upstream",
        default=None,
        help="root URL /v1/messages is sent to (default https://api.anthropic.com)",
    )
    serve.add_argument(
        "--backend",
        default=None,
        help="sqlite (default) or redis://HOST:PORT/DB shared by replicas",
    )
    serve.set_defaults(run=cmd_serve)

    stats = commands.add_parser("stats", help="hit rate, tokens and dollars saved, from the ledger")
    add_data_dir(stats)
    stats.add_argument(
        "--since",
        default="24h",
        help="window: 90m, 24h, 7d, or all (default 24h)",
    )
    stats.add_argument(
        "--by",
        default=None,
        choices=[
            "model",
            "tenant",
            "namespace",
            "tier",
            "day",
            "hour",
            "status",
            "endpoint",
            "reason",
        ],
        help="split into groups",
    )
    stats.add_argument("--json", action="store_true", help="JSON for scripts")
    stats.add_argument(
        "--backend",
        default=None,
        help="read the ledger of this backend: sqlite (default) or redis://HOST:PORT/DB",
    )
    stats.set_defaults(run=cmd_stats)

    analyze = commands.add_parser(
        "analyze",
        help="why requests missed, what another threshold or TTL would give, what to change",
    )
    add_data_dir(analyze)
    analyze.add_argument(
        "--backend",
        default=None,
        help="read this backend: sqlite (default) or redis://HOST:PORT/DB",
    )
    analyze.add_argument("--since", default="7d", help="window: 24h, 7d, or all (default 7d)")
    analyze.add_argument("--json", action="store_true", help="JSON for scripts")
    analyze.set_defaults(run=cmd_analyze)

    purge = commands.add_parser("purge", help="remove cached entries")
    add_data_dir(purge)
    what = purge.add_mutually_exclusive_group()  # purge_filter says when none is given
    what.add_argument("--all", action="store_true", help="every entry")
    what.add_argument("--namespace", help="entries of one namespace")
    what.add_argument("--model", help="entries of one model")
    what.add_argument("--older-than", help="entries stored longer ago than this (7d, 12h)")
    what.add_argument("--key", help="one entry by its X-Cache-Key")
    what.add_argument("--tag", help="entries stored with this X-Cache-Tags tag")
    what.add_argument(
        "--prompt", help="entries whose stored prompt (the text compared) this regex finds"
    )
    purge.set_defaults(run=cmd_purge)

    warm = commands.add_parser(
        "warm", help="fill the cache by sending a file of requests through a running gateway"
    )
    add_data_dir(warm)
    warm.add_argument(
        "file",
        help='JSON lines: a chat completions body, or {"path": "/v1/...", "body": {...}}',
    )
    warm.add_argument(
        "--gateway",
        default=None,
        help="gateway URL (default: the one serving --data-dir, else host and port of the config)",
    )
    warm.add_argument("--concurrency", type=int, default=8, help="requests at once (default 8)")
    warm.add_argument("--namespace", default=None, help="X-Cache-Namespace of every request")
    warm.add_argument(
        "--api-key", default=None, help="the API key the apps use (their tenant's entries)"
    )
    warm.set_defaults(run=cmd_warm)

    export = commands.add_parser(
        "export", help="write every live entry as JSON lines to stdout (also while serving)"
    )
    add_data_dir(export)
    add_backend(export)
    export.add_argument("--namespace", default=None, help="only entries of this namespace")
    export.add_argument("--tag", default=None, help="only entries stored with this tag")
    export.set_defaults(run=cmd_export)

    load = commands.add_parser(
        "import", help="load an export file into a data dir or backend (vectors recomputed)"
    )
    add_data_dir(load)
    add_backend(load)
    load.add_argument("file", help="a file `cachegate export` wrote")
    load.set_defaults(run=cmd_import)

    mock = commands.add_parser("mock-upstream", help="a deterministic OpenAI-compatible upstream")
    mock.add_argument("--host", default="127.0.0.1")
    mock.add_argument("--port", type=int, default=8081)
    mock.add_argument("--latency-ms", type=float, default=0.0)
    mock.set_defaults(run=cmd_mock_upstream)

    demo = commands.add_parser("demo", help="offline end-to-end demo through the openai client")
    demo.add_argument("--port", type=int, default=None, help="gateway port (default: a free one)")
    demo.add_argument(
        "--wait",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="keep the gateway running for the dashboard (default: on a terminal)",
    )
    demo.set_defaults(run=cmd_demo)

    evaluate = commands.add_parser("eval", help="semantic-tier precision/recall on labeled pairs")
    evaluate.add_argument(
        "--pairs",
        default="../shared/data/qqp_dev.jsonl",
        help="JSON lines {text_a, text_b, label}",
    )
    evaluate.add_argument(
        "--split",
        default="heldout",
        choices=["heldout", "report", "tune", "all"],
        help="heldout: only pairs of the by-question split never used in tuning "
        "(default); report / tune: the pairs a set marks so in its split field (the prompt "
        "pairs, split by topic); all: every pair (files not used in tuning)",
    )
    evaluate.add_argument("--limit", type=int, default=None, help="evaluate the first N pairs")
    evaluate.add_argument(
        "--gateway",
        default=None,
        help="URL of a running gateway (default: start one with a mock upstream)",
    )
    evaluate.add_argument("--json", default=None, help="also write the report as JSON here")
    evaluate.set_defaults(run=cmd_eval)

    bench = commands.add_parser("bench", help="the performance benchmark (BENCHMARKS.md)")
    bench.add_argument("--quick", action="store_true", help="fewer rounds, for a smoke run")
    bench.add_argument("--json", default=None, help="also write the report as JSON here")
    bench.add_argument(
        "--vs",
        choices=["litellm"],
        default=None,
        help="also measure the LiteLLM proxy's cached answers side by side "
        "(make bench VS=litellm installs it)",
    )
    bench.set_defaults(run=cmd_bench)
    return top


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    # Libraries that narrate their start-up (faiss's CPU probing, model loading) stay quiet.
    for noisy in (
        "faiss",
        "faiss.loader",
        "sentence_transformers",
        "transformers",
        "httpx",
        "httpx2",
        "openai",
    ):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    os.environ.setdefault("TQDM_DISABLE", "1")
    top = parser()
    apply_environment(top)
    args = top.parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()
