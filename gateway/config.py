"""The config object: defaults < configs/*.yaml < CACHEGATE_* environment < CLI flags.

One frozen `Config` is built at start and passed down; nothing reads the environment
or a global after that. Every knob is documented in configs/default.yaml. Each key
`a.b` of the file can also be set as the variable `CACHEGATE_A_B` (`CACHEGATE_PORT`,
`CACHEGATE_SEMANTIC_ENABLED`, ...).
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from policies.decide import PolicyConfig
from policies.refresh import RefreshAhead
from policies.rules import Rule, parse_rules

# The shipped configs/ package: beside the code in a checkout, in site-packages when installed
# (always as files: the wheel is never zipped, so the Traversable is a real path).
SHIPPED_CONFIGS = Path(str(resources.files("configs")))
AT_LEAST_ONE = {"min": 1}  # field metadata: a count that must be at least one
EVICTIONS = {"choices": ("lru", "lfu", "ttl")}  # field metadata: the values it may take
NULLS = ("null", "none")  # an optional knob's value, in the environment, that unsets it


@dataclass(frozen=True, slots=True)
class UpstreamRoute:
    """Requests whose model matches `models` (a regular expression) go to `url`."""

    models: str
    url: str
    api_key: str | None = None


@dataclass(frozen=True, slots=True)
class SemanticConfig:
    enabled: bool = True
    embedder: str = "minilm-onnx"  # minilm-onnx (int8) | minilm (torch) | hashing (tests)
    verifier: str = "cross-encoder"  # cross-encoder | cosine (raw cosine as the score)
    threshold: float | None = None  # None: the verifier's calibrated default
    cosine_floor: float = 0.5  # candidates below this raw cosine are not even verified
    min_chars: int = 8
    max_chars: int = 2000
    hnsw_from: int = 20000  # a partition switches from exact search to HNSW past this size
    batch_max: int = field(default=32, metadata=AT_LEAST_ONE)  # micro-batch bound
    threads: int = field(default=1, metadata=AT_LEAST_ONE)  # inference threads per model run
    # Model runs at once, across embedder and verifier; None: one per core.
    workers: int | None = field(default=None, metadata=AT_LEAST_ONE)
    # Threads for a model run when it is the only lookup in flight.
    idle_threads: int = field(default=2, metadata=AT_LEAST_ONE)

    @property
    def worker_count(self) -> int:
        """Model runs at once: `workers`, or one per core."""
        return self.workers or os.cpu_count() or 1


@dataclass(frozen=True, slots=True)
class Config:
    host: str = "127.0.0.1"
    port: int = 8080
    upstream: str = "https://api.openai.com/v1"
    upstream_key: str | None = None
    routes: tuple[UpstreamRoute, ...] = ()
    # Root URL that /v1/messages (Anthropic) is appended to, and its x-api-key if set.
    anthropic_upstream: str = "https://api.anthropic.com"
    anthropic_upstream_key: str | None = None
    data_dir: Path = Path(".cachegate")
    backend: str = "sqlite"
    admin_token: str | None = None  # None: the one generated into DATA_DIR/admin-token
    admin_open_loopback: bool = False  # admin routes without a token for unproxied loopback
    default_ttl: float = 7 * 86400
    max_ttl: float = 30 * 86400
    max_stale: float = 86400
    memory_bytes: int = 64 * 2**20
    max_entries: int = 1_000_000
    max_store_bytes: int = 4 * 2**30
    eviction: str = field(default="lru", metadata=EVICTIONS)  # what goes first past a bound
    max_entries_per_tenant: int | None = field(default=None, metadata=AT_LEAST_ONE)
    compress_min_bytes: int | None = 1024  # None: stored answers are not compressed
    max_body_bytes: int = 32 * 2**20
    max_header_bytes: int = 64 * 2**10
    max_json_depth: int = 64
    max_messages: int = 4096
    client_header_timeout: float = 15.0  # seconds for a client to send its request headers
    client_body_timeout: float = 60.0  # seconds a request body may pause between bytes
    client_idle_timeout: float = 75.0  # seconds a keep-alive connection may sit idle
    key_ignore: tuple[str, ...] = ("stream", "stream_options", "user")
    shared_tenant: str | None = None
    rules: tuple[Rule, ...] = ()  # cache rules by model, namespace, endpoint, path, tenant
    upstream_connect_timeout: float = 10.0
    upstream_read_timeout: float = 600.0
    upstream_concurrency: int = 512
    upstream_queue_timeout: float = 30.0
    pricing_file: Path = SHIPPED_CONFIGS / "pricing.yaml"
    ledger_flush_seconds: float = 0.5
    ledger_retention_days: float = 400.0  # older rows are rolled up into daily totals
    log_level: str = "info"
    semantic: SemanticConfig = field(default_factory=SemanticConfig)
    refresh_ahead: RefreshAhead = field(default_factory=RefreshAhead)  # off by default

    def policy(self, default_threshold: float) -> PolicyConfig:
        return PolicyConfig(
            default_ttl=self.default_ttl,
            max_ttl=self.max_ttl,
            key_ignore=self.key_ignore,
            shared_tenant=self.shared_tenant,
            semantic_enabled=self.semantic.enabled,
            semantic_min_chars=self.semantic.min_chars,
            semantic_max_chars=self.semantic.max_chars,
            default_threshold=(
                default_threshold if self.semantic.threshold is None else self.semantic.threshold
            ),
            max_messages=self.max_messages,
            rules=self.rules,
        )


class ConfigError(ValueError):
    pass


def _flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            flat |= _flatten(value, f"{prefix}{key}.")
        else:
            flat[prefix + key] = value
    return flat


def _build(cls: type, values: dict[str, Any], prefix: str = "") -> Any:
    """Build dataclass `cls` from dotted `values`, converting to the field types."""
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        name = prefix + f.name
        if f.default_factory is not dataclasses.MISSING and dataclasses.is_dataclass(
            f.default_factory
        ):
            kwargs[f.name] = _build(f.default_factory, values, name + ".")
            continue
        if name not in values:
            continue
        value = values[name]
        try:
            kwargs[f.name] = _convert(f.name, f.type, value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"config {name}: {exc}") from None
        choices = f.metadata.get("choices")
        if choices is not None and kwargs[f.name] not in choices:
            raise ConfigError(f"config {name}: {value!r} is not one of {', '.join(choices)}")
        least = f.metadata.get("min")
        if least is not None and kwargs[f.name] is not None and kwargs[f.name] < least:
            raise ConfigError(f"config {name}: must be at least {least}, not {value!r}")
    try:
        return cls(**kwargs)
    except ValueError as exc:  # a block that checks its own values (RefreshAhead)
        raise ConfigError(f"config {prefix.rstrip('.') or 'file'}: {exc}") from None


def _convert(name: str, kind: Any, value: Any) -> Any:
    kind = str(kind)
    if value is None or ("None" in kind and isinstance(value, str) and value.lower() in NULLS):
        return None
    if name == "routes":
        return tuple(UpstreamRoute(**route) for route in value)
    if name == "rules":
        return parse_rules(value)
    if "tuple" in kind:
        return tuple(value.split(",") if isinstance(value, str) else value)
    if "Path" in kind:
        return Path(value)
    if kind.startswith("bool"):
        if isinstance(value, str):
            return value.lower() in ("1", "true", "yes", "on")
        return bool(value)
    if kind.startswith("int"):
        return int(value)
    if kind.startswith("float"):
        return float(value)
    return str(value)


def load_config(
    config_file: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Merge the layers; `overrides` are CLI flags by dotted name (None means not given)."""
    environ = os.environ if environ is None else environ
    config_file = config_file or environ.get("CACHEGATE_CONFIG")
    values: dict[str, Any] = {}
    if config_file:
        try:
            loaded = yaml.safe_load(Path(config_file).read_text()) or {}
        except OSError as exc:
            raise ConfigError(f"cannot read config file {config_file}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {config_file} is not valid YAML: {exc}") from None
        values |= _flatten(loaded)
    known = set(_flatten(dataclasses.asdict(Config())))
    for variable, text in environ.items():
        if not variable.startswith("CACHEGATE_") or variable == "CACHEGATE_CONFIG":
            continue
        suffix = variable.removeprefix("CACHEGATE_").lower()
        name = next((k for k in known if re.sub(r"[.]", "_", k) == suffix), None)
        if name and text:  # an empty variable is as good as unset
            values[name] = text
    values |= {k: v for k, v in (overrides or {}).items() if v is not None}
    return _build(Config, values)
