"""Lexical guards: cheap vetoes for pairs that read alike but ask different things.

A cross-encoder reads meaning well but is weak exactly where a wrong cached answer is
most embarrassing: another number, a negation, another quoted string or code
identifier. Each guard vetoes a semantic match outright when the two texts disagree on it.
"""

from __future__ import annotations

import re

NUMBER_WORDS = {
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
    "eleven": "11",
    "twelve": "12",
    "twenty": "20",
    "thirty": "30",
    "forty": "40",
    "fifty": "50",
    "hundred": "100",
    "thousand": "1000",
    "million": "1000000",
    "billion": "1000000000",
}
NEGATIONS = {
    "not",
    "no",
    "never",
    "none",
    "nobody",
    "nothing",
    "neither",
    "nor",
    "cannot",
    "without",
    "nowhere",
    "isnt",
    "arent",
    "wasnt",
    "werent",
    "dont",
    "doesnt",
    "didnt",
    "cant",
    "couldnt",
    "wont",
    "wouldnt",
    "shouldnt",
    "hasnt",
    "havent",
    "hadnt",
    "mustnt",
}
WORD = re.compile(r"[a-z0-9]+(?:['’][a-z]+)?")
NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
QUOTED = re.compile(r"\"([^\"]{1,200})\"|`([^`]{1,200})`|“([^”]{1,200})”")
IDENTIFIER = re.compile(r"\b(?:[a-z]+_[a-z0-9_]+|[a-z]+[A-Z][A-Za-z0-9]*|\w+\(\))")


def numbers(text: str) -> frozenset[str]:
    """Numbers in the text, digits or words, normalized ("2" == "two", "1,000" == "1000")."""
    found = {n.replace(",", "").rstrip(".") for n in NUMBER.findall(text)}
    found |= {NUMBER_WORDS[w] for w in WORD.findall(text.lower()) if w in NUMBER_WORDS}
    return frozenset(found)


def negated(text: str) -> bool:
    """Whether the text holds an odd number of negations ("not" and "n't" alike)."""
    words = [w.replace("'", "").replace("’", "") for w in WORD.findall(text.lower())]
    return sum(w in NEGATIONS for w in words) % 2 == 1


def quoted(text: str) -> frozenset[str]:
    return frozenset(
        next(g for g in m.groups() if g).strip().lower() for m in QUOTED.finditer(text)
    )


def identifiers(text: str) -> frozenset[str]:
    return frozenset(IDENTIFIER.findall(text))


def veto(new_text: str, cached_text: str) -> str | None:
    """The name of the first guard that rejects the pair, or None when all agree."""
    if numbers(new_text) != numbers(cached_text):
        return "numbers"
    if negated(new_text) != negated(cached_text):
        return "negation"
    if quoted(new_text) != quoted(cached_text):
        return "quoted"
    if identifiers(new_text) != identifiers(cached_text):
        return "identifiers"
    return None
