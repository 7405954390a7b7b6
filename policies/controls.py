"""Per-request cache controls, parsed from the request headers (INTERFACE.md)."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Mode = Literal["semantic", "exact", "off"]
NAMESPACE_PATTERN = re.compile(r"^[A-Za-z0-9._:/@+-]{1,128}$")
TAG_PATTERN = re.compile(r"[A-Za-z0-9._:/@+-]{1,64}")
MAX_TAGS = 16
# A directive: up to a comma outside double quotes, so private="a, b" is one (RFC 9111,
# 5.2); its group is the last closing quote, "" when a quote runs to the end unclosed.
# Linear: a header of 64 KiB is read in milliseconds, whatever its quotes.
DIRECTIVE = re.compile(r'(?:[^,"]|"(?:[^"\\]|\\.)*("?))+')  # \" inside quotes is a quote
# A plain decimal in ASCII: float() would also take "1_000", "١٢", "nan" and "1e400".
DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
CONTROL_HEADERS = {
    name.lower(): name
    for name in (
        "Cache-Control",
        "X-Cache-TTL",
        "X-Cache-Namespace",
        "X-Cache-Mode",
        "X-Cache-Threshold",
        "X-Cache-Tags",
    )
}


class ControlError(ValueError):
    """A malformed control header; the message names the header."""

    def __init__(self, header: str, problem: str) -> None:
        super().__init__(f"invalid {header} header: {problem}")
        self.header = header


@dataclass(frozen=True, slots=True)
class Controls:
    no_cache: bool = False  # do not read; call upstream; store (REFRESH)
    no_store: bool = False  # never store this answer
    max_age: float | None = None  # accept only entries at most this old (seconds)
    ttl: float | None = None  # X-Cache-TTL
    namespace: str = "default"
    mode: Mode = "semantic"
    threshold: float | None = None  # X-Cache-Threshold, on the calibrated score
    tags: tuple[str, ...] = ()  # X-Cache-Tags: stored with the answer, for purging by tag


def _non_negative_number(header: str, text: str) -> float:
    if not DECIMAL.fullmatch(text):
        raise ControlError(header, f"{text!r} is not a number of seconds")
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise ControlError(header, f"{text!r} must be a finite number >= 0")
    return value


def _cache_control(lines: list[str]) -> tuple[bool, bool, float | None]:
    """Each line on its own: a quote left open on one must not hide a later line's
    no-store, and is a ControlError like any other malformed directive."""
    no_cache = no_store = False
    max_age: float | None = None
    for match in (match for line in lines for match in DIRECTIVE.finditer(line)):
        directive, closing_quote = match.group(0, 1)
        if closing_quote == "":
            raise ControlError(
                "Cache-Control", f"the quote in {directive.strip()!r} is never closed"
            )
        name, _, value = directive.strip().partition("=")
        name = name.strip().lower()
        value = value.strip().strip('"')
        if name == "no-cache":
            no_cache = True
        elif name == "no-store":
            no_store = True
        elif name in ("max-age", "s-maxage"):
            if not (value.isascii() and value.isdigit()):  # "²".isdigit() is true too
                raise ControlError("Cache-Control", f"{name} needs whole seconds, got {value!r}")
            seconds = float(value)
            max_age = seconds if max_age is None else min(max_age, seconds)
        elif name and not re.fullmatch(r"[a-z-]+", name):
            raise ControlError("Cache-Control", f"cannot read directive {directive.strip()!r}")
        # Other well-formed directives (private, must-revalidate, ...) do not apply here.
    return no_cache, no_store, max_age


def valid_namespace(namespace: str) -> bool:
    return NAMESPACE_PATTERN.fullmatch(namespace) is not None


def valid_tag(tag: str) -> bool:
    return TAG_PATTERN.fullmatch(tag) is not None


def parse_tags(text: str) -> tuple[str, ...]:
    """X-Cache-Tags: comma-separated tags, each once, in the order sent; a blank header
    is no tags."""
    if not text.strip():
        return ()
    tags = tuple(dict.fromkeys(tag.strip() for tag in text.split(",")))
    for tag in tags:
        if not valid_tag(tag):
            raise ControlError(
                "X-Cache-Tags",
                f"{tag!r} is not a tag: use 1-64 characters from letters, digits and "
                ". _ : / @ + -, tags separated by commas",
            )
    if len(tags) > MAX_TAGS:
        raise ControlError("X-Cache-Tags", f"{len(tags)} tags; at most {MAX_TAGS} are kept")
    return tags


def parse_controls(lines: Iterable[tuple[str, str]]) -> Controls:
    """Read the control headers among a request's header lines; raise ControlError naming
    the header that is malformed.

    Lines of a list header (Cache-Control, X-Cache-Tags) sent more than once are one list
    (RFC 9110, 5.3), so a no-store on a second line counts; any other control header sent
    twice is a ControlError, as it would be ambiguous which value applies.
    """
    cache_control: list[str] = []
    headers: dict[str, str] = {}
    for name, value in lines:
        header = CONTROL_HEADERS.get(name.lower())
        if header is None:
            continue
        if header == "Cache-Control":
            cache_control.append(value)
        elif header not in headers:
            headers[header] = value
        elif header == "X-Cache-Tags":
            headers[header] += f", {value}"
        else:
            raise ControlError(header, "it is sent more than once")
    no_cache, no_store, max_age = _cache_control(cache_control)
    ttl = None
    if (text := headers.get("X-Cache-TTL")) is not None:
        ttl = _non_negative_number("X-Cache-TTL", text.strip())
    namespace = headers.get("X-Cache-Namespace", "default").strip()
    if not valid_namespace(namespace):
        raise ControlError(
            "X-Cache-Namespace", "use 1-128 characters from letters, digits and . _ : / @ + -"
        )
    mode = headers.get("X-Cache-Mode", "semantic").strip().lower()
    if mode not in ("semantic", "exact", "off"):
        raise ControlError("X-Cache-Mode", f"{mode!r} is not one of semantic, exact, off")
    threshold = None
    if (text := headers.get("X-Cache-Threshold")) is not None:
        if not DECIMAL.fullmatch(text.strip()):
            raise ControlError("X-Cache-Threshold", f"{text!r} is not a number")
        threshold = float(text)
        if not 0.0 <= threshold <= 1.0:
            raise ControlError("X-Cache-Threshold", f"{text!r} must be between 0 and 1")
    tags = parse_tags(headers.get("X-Cache-Tags", ""))
    return Controls(no_cache, no_store, max_age, ttl, namespace, mode, threshold, tags)  # type: ignore[arg-type]
