"""Write the common words of each language the guards read: policies/words/<language>.txt.

    .venv/bin/python scripts/common_words.py

A word is common when wordfreq (https://github.com/rspeer/wordfreq, data CC BY-SA 4.0)
counts it at least once per million words (Zipf 3), in the language's best list. Only
words of letters, COMMON_WORDS_MIN_LETTERS or more, written without accents as the guards
compare them. Two words one edit apart of which only one is common are one word misspelt
("persne" / "persone"); both common, two words ("hermano" / "hermana").
tests/test_packaging.py checks that the files are what this writes.
"""

from __future__ import annotations

from pathlib import Path

from wordfreq import get_frequency_dict

from policies.guards import COMMON_WORDS_MIN_LETTERS, WORDS_DIR, without_accents
from policies.prompts import STOPWORDS

PER_MILLION = 1e-6  # Zipf 3


def common_words(language: str) -> list[str]:
    frequencies = get_frequency_dict(language)
    return sorted(
        {
            without_accents(word)
            for word, frequency in frequencies.items()
            if frequency >= PER_MILLION and word.isalpha() and len(word) >= COMMON_WORDS_MIN_LETTERS
        }
    )


def main() -> None:
    words_dir = Path(str(WORDS_DIR))  # the checkout's policies/words, written in place
    words_dir.mkdir(exist_ok=True)
    for language in STOPWORDS:
        words = common_words(language)
        (words_dir / f"{language}.txt").write_text("\n".join(words) + "\n")
        print(f"{language}: {len(words)} words")


if __name__ == "__main__":
    main()
