"""Cache rules from the config: the first rule whose `match` fits a request sets its mode,
TTL, threshold, storing and key ignore-list (INTERFACE.md, "Rules"). Pure: the rules are
read once at start (a bad one is refused with its name) and applied per decision.

Request headers still apply within a rule's bounds: X-Cache-Mode may only narrow the
rule's mode, X-Cache-TTL is capped by its max_ttl, X-Cache-Threshold may only raise its
threshold, and no-store stays no-store.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from policies.controls import Controls, Mode

if TYPE_CHECKING:
    from policies.decide import PolicyConfig

MATCH_KEYS = ("model", "namespace", "endpoint", "path", "tenant")
SETTINGS = ("mode", "ttl", "max_ttl", "threshold", "store", "key_ignore")
MODES: tuple[Mode, ...] = ("semantic", "exact", "off")  # widest first
# The path of each cached endpoint, for rules that match by path.
PATHS = {
    "chat": "/v1/chat/completions",
    "completions": "/v1/completions",
    "embeddings": "/v1/embeddings",
    "messages": "/v1/messages",
    "responses": "/v1/responses",
}


class RuleError(ValueError):
    """A rule the config cannot have; the message names the rule."""


@dataclass(frozen=True, slots=True)
class Rule:
    name: str  # its `name`, or rules[i]
    patterns: tuple[tuple[str, re.Pattern[str]], ...] = ()  # (model|namespace|endpoint|path, re)
    tenant: str | None = None
    mode: Mode | None = None
    ttl: float | None = None
    max_ttl: float | None = None
    threshold: float | None = None
    store: bool | None = None
    key_ignore: tuple[str, ...] | None = None

    def fits(self, subject: Mapping[str, str]) -> bool:
        if self.tenant is not None and subject["tenant"] != self.tenant:
            return False
        return all(pattern.fullmatch(subject[key]) for key, pattern in self.patterns)


def parse_rules(value: Any) -> tuple[Rule, ...]:
    """The `rules:` list of the config; RuleError naming the first bad rule."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise RuleError("rules must be a list of {match: {...}, mode/ttl/...} objects")
    return tuple(_parse_rule(i, raw) for i, raw in enumerate(value))


def _parse_rule(index: int, raw: Any) -> Rule:
    label = f"rules[{index}]"
    if isinstance(raw, dict) and isinstance(raw.get("name"), str):
        label += f" ({raw['name']})"

    def fail(problem: str) -> RuleError:
        return RuleError(f"{label}: {problem}")

    if not isinstance(raw, dict):
        raise fail("must be an object with `match` and the settings it changes")
    unknown = set(raw) - {"name", "match", *SETTINGS}
    if unknown:
        raise fail(f"unknown keys {sorted(unknown)}; a rule has name, match, {', '.join(SETTINGS)}")
    match = raw.get("match") or {}
    if not isinstance(match, dict) or set(match) - set(MATCH_KEYS):
        raise fail(f"match must be an object with some of {', '.join(MATCH_KEYS)}")
    patterns = []
    for key in MATCH_KEYS[:4]:
        if key in match:
            if not isinstance(match[key], str):
                raise fail(f"match.{key} must be a regular expression (a string)")
            try:
                patterns.append((key, re.compile(match[key])))
            except re.error as exc:
                problem = f"match.{key} {match[key]!r} is not a regular expression: {exc}"
                raise fail(problem) from None
    tenant = match.get("tenant")
    if tenant is not None and not isinstance(tenant, str):
        raise fail("match.tenant must be a tenant name")
    mode = raw.get("mode")
    if mode is False:  # YAML reads an unquoted `off` as false
        mode = "off"
    if mode is not None and mode not in MODES:
        raise fail(f"mode {mode!r} is not one of semantic, exact, off")
    ttl, max_ttl = _seconds(raw, "ttl", fail), _seconds(raw, "max_ttl", fail)
    if ttl is not None and max_ttl is not None and ttl > max_ttl:
        raise fail(f"ttl {ttl:g} is above its max_ttl {max_ttl:g}")
    threshold = raw.get("threshold")
    if threshold is not None and (
        isinstance(threshold, bool)
        or not isinstance(threshold, int | float)
        or not 0 <= threshold <= 1
    ):
        raise fail(f"threshold {threshold!r} must be a number from 0 to 1")
    store = raw.get("store")
    if store is not None and not isinstance(store, bool):
        raise fail(f"store {store!r} must be true or false")
    key_ignore = raw.get("key_ignore")
    if key_ignore is not None and (
        not isinstance(key_ignore, list) or not all(isinstance(k, str) for k in key_ignore)
    ):
        raise fail("key_ignore must be a list of body field names")
    return Rule(
        name=label,
        patterns=tuple(patterns),
        tenant=tenant,
        mode=mode,
        ttl=ttl,
        max_ttl=max_ttl,
        threshold=None if threshold is None else float(threshold),
        store=store,
        key_ignore=None if key_ignore is None else tuple(key_ignore),
    )


def _seconds(raw: dict[str, Any], key: str, fail: Any) -> float | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise fail(f"{key} {value!r} must be a number of seconds")
    if value < 0:
        raise fail(f"{key} {value!r} must be at least 0")
    return float(value)


def first_rule(
    rules: tuple[Rule, ...], endpoint: str, model: str, namespace: str, tenant: str
) -> Rule | None:
    subject = {
        "model": model,
        "namespace": namespace,
        "endpoint": endpoint,
        "path": PATHS.get(endpoint, endpoint),
        "tenant": tenant,
    }
    return next((rule for rule in rules if rule.fits(subject)), None)


def within_rules(
    endpoint: str, model: str, controls: Controls, tenant: str, config: PolicyConfig
) -> tuple[Controls, PolicyConfig]:
    """The controls and the config for a request as the first rule that fits leaves them
    (both unchanged when none does)."""
    rule = first_rule(config.rules, endpoint, model, controls.namespace, tenant)
    if rule is None:
        return controls, config
    narrowest = max(MODES.index(controls.mode), MODES.index(rule.mode or "semantic"))
    threshold = controls.threshold
    if rule.threshold is not None and threshold is not None:
        threshold = max(threshold, rule.threshold)  # a header may only be stricter
    controls = dataclasses.replace(
        controls,
        mode=MODES[narrowest],
        no_store=controls.no_store or rule.store is False,
        threshold=threshold,
    )
    config = dataclasses.replace(
        config,
        default_ttl=config.default_ttl if rule.ttl is None else rule.ttl,
        max_ttl=config.max_ttl if rule.max_ttl is None else rule.max_ttl,
        key_ignore=config.key_ignore if rule.key_ignore is None else rule.key_ignore,
        default_threshold=(config.default_threshold if rule.threshold is None else rule.threshold),
    )
    return controls, config
