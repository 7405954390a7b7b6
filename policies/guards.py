"""Lexical guards: cheap vetoes for pairs that read alike but ask different things.

A cross-encoder reads meaning well but is weak exactly where a wrong cached answer is
most embarrassing: another number, a negation, another quoted string or code
identifier, the same words with two parts trading places. Each guard vetoes a semantic
match outright when the two texts disagree on it.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from fractions import Fraction
from importlib import resources
from itertools import groupby, zip_longest
from unicodedata import category, decomposition, normalize

# Numbers in words, read whole ("sixty-four", "five hundred", "ten thousand"). "one" alone
# is no number: "how can one ..." uses it as a pronoun far more often (see spelt_numbers).
SMALL_NUMBERS = {
    word: value
    for value, word in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen"
        " fourteen fifteen sixteen seventeen eighteen nineteen".split()
    )
}
TENS = {
    word: 10 * value
    for value, word in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split(), 2)
}
SCALES = {"hundred": 100, "thousand": 1000, "million": 10**6, "billion": 10**9}
MULTIPLIERS = {**SCALES, "dozen": 12}
SPELT_WORDS = frozenset(SMALL_NUMBERS) | frozenset(TENS) | frozenset(MULTIPLIERS)
NUMBER_WORDS = SPELT_WORDS - {"one"}
# Ordinal words are numbers written as ordinals: see numbers_differ.
ORDINALS = {
    "first": "1",
    "second": "2",
    "third": "3",
    "fourth": "4",
    "fifth": "5",
    "sixth": "6",
    "seventh": "7",
    "eighth": "8",
    "ninth": "9",
    "tenth": "10",
    "eleventh": "11",
    "twelfth": "12",
    "twentieth": "20",
    "hundredth": "100",
}
# "2nd" is the word "second" wherever words are compared.
ORDINAL_DIGITS = {
    n + {"1": "st", "2": "nd", "3": "rd"}.get(n, "th"): word for word, n in ORDINALS.items()
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
    # German, French and Spanish ones the models read as plain words ("Warum ist der
    # Himmel nicht blau?" scored 0.86 against the question without "nicht"). Not "non":
    # in English it is a prefix ("non-fiction").
    "nicht",
    "kein",
    "keine",
    "keinen",
    "keiner",
    "nie",
    "niemals",
    "pas",
    "jamais",
    "nunca",
}
# Pairs of words that flip an answer when one text has one and the other the other.
# fmt: off
OPPOSITES = [tuple(pair.split("/")) for pair in """
rise/fall rises/falls rose/fell rising/falling increase/decrease increased/decreased
increases/decreases up/down gain/lose gained/lost gains/losses win/lose won/lost wins/losses
winner/loser strengthen/weaken strengthened/weakened higher/lower high/low more/less
most/least best/worst first/last before/after north/south east/west northern/southern
eastern/western buy/sell bought/sold buying/selling open/close opened/closed start/end
started/ended approve/reject approved/rejected accept/reject accepted/rejected
agreed/declined agree/decline leading/trailing lead/trail for/against pro/anti men/women
men's/women's male/female boys/girls this/last next/last today/yesterday tomorrow/yesterday
noon/midnight morning/evening largest/smallest biggest/smallest import/export
imports/exports add/remove hot/cold positive/negative legal/illegal allow/ban allowed/banned
profit/loss hire/fire hired/fired join/leave joined/left enter/exit inside/outside
above/below maximum/minimum true/false input/output client/server upload/download
encrypt/decrypt private/public static/dynamic
""".split()]
# fmt: on
# Prefixes that undo a verb (accents left out): en un-/dis-/de-, es/pt/fr des-/dé-, de
# ent-, it s-.
REVERSING_PREFIXES = ("un", "dis", "de", "des", "ent", "s")
UNDONE_MIN = 4  # letters the word needs ("undo" / "do" is no pair to read)
# Capitalized words that are not names: question words and sentence openers, the verbs
# that open an order ("Output only the pattern.") and the words of a bare answer's order.
# fmt: off
NOT_NAMES = frozenset("""
a am an and are at be but can could did do does for he her here his how i if in is it its
may might must my of on or our shall she should that the their there these they this those
to was we were what when where which who whom whose why will would you your
i'm i'll i'd i've i’m i’ll i’d i’ve prof professor dr doctor mr mrs ms miss
output reply respond answer return give write show provide explain describe list keep
make use include add format summarize summarise rewrite translate just only no nothing
""".split())
# fmt: on
# Words that carry little meaning of their own: swapping them rewords, not changes, a text.
# fmt: off
FUNCTION_WORDS = frozenset("""
a an the is are was were be been being do does did doing have has had having i me my we our
you your he she it its they them their this that these those what which who whom whose when
where why how can could should would will shall may might must of in on at to for from by
with about as into like through over between out during without under around among and or
but if than so not no very just also too some any each every other such own same few both
all much many quite really get got make there here s t way ways good
""".split())
# fmt: on
# Short forms people type for a word: the same word, not a swapped one.
# fmt: off
SHORT_FORMS = {short: word for short, word in (pair.split("/") for pair in """
pic/picture temp/temperature diff/difference dupe/duplicate js/javascript km/kilometer
info/information app/application tech/technology govt/government config/configuration
repo/repository doc/documentation min/minute hr/hour yr/year ppl/people msg/message
pw/password db/database env/environment dept/department approx/approximately
exam/examination lab/laboratory photo/photograph phone/telephone bike/bicycle
fridge/refrigerator math/mathematic stat/statistic bio/biography func/function
var/variable arg/argument param/parameter dir/directory img/image vid/video
char/character bday/birthday thru/through bc/because go/golang
""".split())}
# fmt: on
# Endings that make another form of one word ("form" / "formed", "sleep" / "sleeping",
# "narcissist" / "narcissistic", "translate" / "translation"), taken off stems of four
# letters or more.
WORD_ENDINGS = ("ing", "ion", "ed", "ic", "y", "e")
STEM_MIN = 4
# Unicode categories of typography: dashes, quotes, brackets, spaces, zero-width marks.
TYPOGRAPHY = frozenset({"Pd", "Pi", "Pf", "Ps", "Pe", "Zs", "Cf"})
FRACTION_SLASH = "\u2044"  # NFKC writes "½" as "1⁄2"; the numbers guard reads it
# Read as nothing by the unseen-characters guard: Spanish opening marks, the fraction slash.
INVERTED_MARKS = frozenset({"¿", "¡", FRACTION_SLASH})
# Numerals of one character whose digits side by side are one number ("¹⁰" is 10); any
# other (a fraction, a circled number) is a number of its own.
DIGIT_SCRIPTS = ("<super>", "<sub>")
MISSPELT_MIN = 8  # letters a word needs before one edit of it counts as a typo
VALUE_MAX = 2  # a swapped word this short is a value (a size, a grade): vetoed, not weighed
DROPPED_MIN = 5  # letters a word needs before one dropped or added counts as a typo
# The words of DROPPED_MIN letters and more that the models' vocabulary holds whole
# (embeddings/models/tokenizer.json; a test keeps the two equal): two of them one edit
# apart are two words ("employees" / "employers", "planet" / "plane"), not a slip.
KNOWN_WORDS = frozenset((resources.files("policies") / "known_words.txt").read_text().split())
# Each language's words of COMMON_WORDS_MIN_LETTERS letters or more that are met at least
# once per million words, without accents (scripts/common_words.py writes them from
# wordfreq's lists, data CC BY-SA 4.0). Of two words one edit apart, one common and one
# not, the other is a slip ("persne" / "persone"); two common ones are two words
# ("hermano" / "hermana", "effected" / "affected").
COMMON_WORDS_MIN_LETTERS = 4
WORDS_DIR = resources.files("policies") / "words"
COMMON_WORDS = {
    path.name.removesuffix(".txt"): frozenset(path.read_text().split())
    for path in WORDS_DIR.iterdir()
    if path.name.endswith(".txt")
}
TRANSPOSED_MIN = 5  # letters a word needs before two swapped letters count as a typo
# Joints around which two parts may trade places without changing the question ("spot
# fixing and match fixing", "Is Spanish similar to Italian?"), once the words that only
# introduce a part ("the", "my") are set aside. A bare "with" is not one: "replace X with Y".
ORDER_FREE_JOINTS = frozenset(
    tuple(joint.split())
    for joint in [
        "and", "or", "nor", "vs", "versus", "v", "plus", "as well as", "along with",
        "together with", "same as", "similar to", "compatible with", "related to",
        "different from", "differ from", "equal to", "identical to", "compare to",
        "compare with", "compared to", "compared with",
    ]
)  # fmt: skip
DIRECTED_JOINTS = frozenset({"to", "into", "than"})
JOINT_FILLERS = frozenset({"a", "an", "the", "my", "your", "our", "their", "his", "her", "its"})
SWAP_REACH = 3  # words past the first and last difference that a swapped part may span
SWAP_MAX_SPAN = 30  # words from the first to the last difference; longer swaps are not sought
NAME = re.compile(r"\b[A-Z][A-Za-z'’.-]*[a-zA-Z]")
WORD = re.compile(r"[a-z0-9]+(?:['’][a-z]+)?")
# Digits, with thousands after commas ("1,500"; "[10,9,1]" is three numbers) and decimals.
NUMBER = re.compile(r"\d+(?:,\d{3}(?!\d))*(?:\.\d+)*")
DIGIT = re.compile(r"\d")
# Roman numerals of two or more letters from I, V and X: "World War II", "Henry VIII".
# Not a lone "I" (the pronoun), nor ones with C, D, L or M (CV, DC, ML, CLI are acronyms),
# nor lowercase ones ("xi", "vi" and "iv" are more often a name, an editor, a drip).
ROMAN = re.compile(r"\b(?=[IVX]{2,}\b)X{0,3}(?:IX|IV|V?I{0,3})\b(?<=[IVX])")
ROMAN_VALUES = {"I": 1, "V": 5, "X": 10}
# The two world wars however abbreviated: a lone "I" is otherwise the pronoun.
WORLD_WAR = re.compile(r"\b(?:[Ww]orld [Ww]ar |WW)(II|I)\b")
# Single quotes too, but only around words: not the apostrophe of "don't" or "kids' toys".
QUOTED = re.compile(
    r"\"([^\"]{1,200})\"|`([^`]{1,200})`|“([^”]{1,200})”|‘([^’]{1,200})’"
    r"|(?<!\w)'([^'\n]{1,200})'(?!\w)"
)
# A snake_case or camelCase name, a call, or a regex character class with a range, whose
# case is what it matches ("[A-Z]" / "[a-z]").
IDENTIFIER = re.compile(
    r"\b(?:[a-z]+_[a-z0-9_]+|[a-z]+[A-Z][A-Za-z0-9]*|\w+\(\))|\[\^?[^\]\s]{0,20}\w-\w[^\]\s]{0,20}\]"
)


# How a number is written: "3" and "three" count, "3rd" and "third" rank, and a Roman
# numeral does either ("World War II" is "World War 2" and "the Second World War").
CARDINAL, ORDINAL, ROMAN_FORM = "cardinal", "ordinal", "roman"
AGE_FORMS = frozenset({CARDINAL, ORDINAL})
ORDINAL_SUFFIXES = ("st", "nd", "rd", "th")
# A day of a month is one number however it is written: "June 14", "14th June", "the 14th
# of June" (a capital May only: "may" is a verb as often).
MONTHS = (
    "january february march april may june july august september october november december"
).split()
# A month's name or its first three letters ("sept" too), in any case but for May.
MONTH_NAMES = {month[:3]: month for month in MONTHS if month != "may"} | {"sept": "september"}
MONTH = (
    "(?i:"
    + "|".join(f"{short}(?:{month[len(short) :]})?" for short, month in MONTH_NAMES.items())
    + ")|May"
)
MONTH_BEFORE = re.compile(rf"\b(?:{MONTH})\.?\s+$")
MONTH_AFTER = re.compile(rf"^(?:st|nd|rd|th)?\s+(?:of\s+)?(?:{MONTH})\b")


def number_forms(text: str, thousands: bool = False) -> dict[str, frozenset[str]]:
    """Each number of the text, normalized ("2" == "two" == "II" == "second", "1,000" ==
    "1000" == "one thousand", "2pm" == "14:00"; "1k" too when `thousands`), with the ways
    the text writes it (CARDINAL, ORDINAL, ROMAN_FORM)."""
    text = spelt_numerals(text)
    if "/2" in text or "⁄2" in text or "half" in text:
        text = AND_A_HALF.sub(r"\1.5", text)
    forms: dict[str, set[str]] = {}
    if DIGIT.search(text):
        read_to = 0
        for m in NUMBER.finditer(text):
            if text[m.start() - 1 : m.start()].isalpha() and text[m.end() : m.end() + 1].isalpha():
                continue  # digits inside a word are a name: "k8s", "i18n", "e2e"
            if m.start() >= read_to:  # not the minutes of a time read whole
                value, kind, read_to = number_at(text, m, thousands)
                forms.setdefault(value, set()).add(kind)
    run: list[str] = []  # number words in a row ("sixty", "four"), "and" between them
    for word in [*WORD.findall(text.lower()), ""]:
        if word in SPELT_WORDS or (run and word == "and"):
            run.append(word)
            continue
        if run:
            for value in spelt_numbers(run):
                forms.setdefault(value, set()).add(CARDINAL)
            run = []
        if word in ORDINALS:
            forms.setdefault(ORDINALS[word], set()).add(ORDINAL)
    for m in ROMAN.finditer(text):
        forms.setdefault(str(roman_value(m.group(0))), set()).add(ROMAN_FORM)
    for m in WORLD_WAR.finditer(text):
        forms.setdefault(str(len(m[1])), set()).add(ROMAN_FORM)
    return {value: frozenset(kinds) for value, kinds in forms.items()}


# A whole number and a half is one number: "2 1/2 cups" and "2½" are "2.5", as is "59 and a
# half".
AND_A_HALF = re.compile(r"\b(\d+)(?:[ -]+1 ?[/⁄] ?2| and a half)\b")


# What follows digits and makes them a time of day, read on a 24-hour clock ("2pm", "2 p.m.",
# "2:00 PM" and "14:00" are one), or scales them ("3 million", "1.5 billion"; "12k" or
# "$350K" where the other text reads it so: "5k" is also a race, "401k" a pension plan).
TIME_AFTER = re.compile(r"(?::(?P<minute>[0-5]\d)(?!\d))?(?: ?(?P<half>[ap])\.? ?m\b\.?)?", re.I)
SCALE_AFTER = re.compile(r" ?(?P<scale>thousand|million|billion)\b|(?P<k>[kK])\b")
THOUSANDS = re.compile(r"\d[kK]\b")


def number_at(text: str, m: re.Match[str], thousands: bool) -> tuple[str, str, int]:
    """The number whose digits NUMBER matched in `m`: its value, how it is written
    (CARDINAL or ORDINAL) and where in the text it ends."""
    digits = m.group(0).replace(",", "").rstrip(".")
    time = TIME_AFTER.match(text, m.end())
    if time and digits.isdigit() and (time["minute"] or time["half"]):
        hour = int(digits)
        if time["half"] and 1 <= hour <= 12:
            hour = hour % 12 + (12 if time["half"].lower() == "p" else 0)
            return f"{hour}:{time['minute'] or '00'}", CARDINAL, time.end()
        if not time["half"] and hour <= 23:
            return f"{hour}:{time['minute']}", CARDINAL, time.end()
    scaled = SCALE_AFTER.match(text, m.end())
    if scaled and (scaled["scale"] or thousands):
        value = Fraction(digits) * SCALES.get(scaled["scale"], 1000)
        written = str(value.numerator) if value.denominator == 1 else str(float(value))
        return written, CARDINAL, scaled.end()
    suffix, after = text[m.end() : m.end() + 2].lower(), text[m.end() + 2 : m.end() + 3]
    dated = bool(
        MONTH_BEFORE.search(text[max(0, m.start() - 12) : m.start()])
        or MONTH_AFTER.match(text[m.end() : m.end() + 16])
    )
    ranked = suffix in ORDINAL_SUFFIXES and not after.isalnum() and not dated
    return digits, ORDINAL if ranked else CARDINAL, m.end()


def spelt_numbers(words: list[str]) -> list[str]:
    """The numbers a run of number words says: ["sixty", "four"] is 64, ["five", "hundred"]
    500, ["two", "three"] two numbers (2 and 3); "one" alone says none (a pronoun)."""
    numbers: list[str] = []
    read: list[str] = []  # the words of the number being read
    total = current = 0
    for word in [*words, ""]:
        if word == "and":
            continue
        small = SMALL_NUMBERS.get(word, TENS.get(word))
        multiplies = word in MULTIPLIERS
        # A small number after another starts a new number, but for "twenty one".
        added = (
            small is not None
            and bool(read)
            and (read[-1] in MULTIPLIERS or (read[-1] in TENS and 0 < small < 10))
        )
        if read and not (multiplies or added):
            if read != ["one"]:
                numbers.append(str(total + current))
            total = current = 0
            read = []
        if not word:
            break
        if word in ("dozen", "hundred"):
            current = (current or 1) * MULTIPLIERS[word]
        elif multiplies:
            total, current = total + (current or 1) * SCALES[word], 0
        else:
            current += small or 0
        read.append(word)
    return numbers


def spelt_numerals(text: str) -> str:
    """The text in NFKC, which spells the one-character numerals with digits and letters
    ("½" is "1⁄2", "①" "1", "²" "2", "Ⅱ" "II"; the models read "½" and "¼" alike), each set
    apart by spaces from the digits beside it: NFKC alone writes "3²" as "32", "2¹⁰" as
    "210" and "1½" as "11⁄2", other numbers."""
    if text.isascii():  # nothing to spell, and NFKC keeps ASCII as it is
        return text

    def numeral(at: int, char: str) -> str | int | None:
        """Which numeral `char` is part of: its script for superscript or subscript
        digits, its place for any other numeral; None for a character of no numeral."""
        if category(char) != "No" or normalize("NFKC", char) == char:
            return None
        script = decomposition(char).partition(" ")[0]
        return script if script in DIGIT_SCRIPTS else at

    pieces = []
    for which, chars in groupby(enumerate(text), lambda item: numeral(*item)):
        run = "".join(char for _, char in chars)
        pieces.append(run if which is None else f" {run} ")
    return normalize("NFKC", "".join(pieces))


def counted_alike(digit_text: str, word_text: str) -> bool:
    """The same count of the same thing: "1 cup" in one text, "one cup" in the other, or
    after the same word where at most one side says what it counts ("for 1 person" / "for
    one", "into 1" / "into one", "Formula 1" / "formula one"; not "for 1 day" / "for one
    week"). "one" alone is mostly a pronoun ("how should one prepare") and stays no
    number."""
    return any(
        (counts and counts == other_counts)
        or (before and before == other_before and not (counts and other_counts))
        for before, counts in ones(ONE_DIGIT, digit_text)
        for other_before, other_counts in ones(ONE_WORD, word_text)
    )


def ones(pattern: re.Pattern[str], text: str) -> list[tuple[str | None, str | None]]:
    """The word before each "1" (or "one") that `pattern` finds, and what it counts (in
    the singular)."""
    return [
        (m["before"], m["counts"] and m["counts"].removesuffix("s"))
        for m in pattern.finditer(text.lower())
    ]


# "1 cup", "1-liter", "into 1" (not a time, "at 1:30", or a decimal: other numbers).
ONE_DIGIT = re.compile(
    r"(?:\b(?P<before>[^\W\d_]+)\s+)?(?<![\d.,])\b1\b(?![.,:]\d)"
    r"(?:[\s-]+(?P<counts>[^\W\d_]+))?"
)
ONE_WORD = re.compile(r"(?:\b(?P<before>[^\W\d_]+)\s+)?\bone\b(?:[\s-]+(?P<counts>[^\W\d_]+))?")


# A number of degrees and its scale, however written: "75 °F", "75F", "75 degrees
# Fahrenheit", "75 graus Celsius", "20 ºC", "20 grados centígrados".
TEMPERATURE = re.compile(
    r"(?<![\w.,])(\d+(?:[.,]\d+)?)\s*(?:[°º]\s*|(?:degrees?|deg|graus?|grados?|grad|degr[ée]s?"
    r"|gradi)\s+)?(c|celsius|centigrade|cent[ií]grados?|f|fahrenheit|kelvin)\b",
    re.IGNORECASE,
)


def temperature_scales(text: str) -> dict[str, set[str]]:
    """Each number of degrees in the text and the scales it is read on ("c", "f", "k")."""
    scales: dict[str, set[str]] = {}
    for number, scale in TEMPERATURE.findall(text):
        scales.setdefault(number.replace(",", "."), set()).add(scale[0].lower())
    return scales


def other_scales(a: str, b: str) -> bool:
    """The same number of degrees on another scale: "Convert 75 °F to Celsius" / "What is
    75 °C in Fahrenheit?" names the same number and both scales, so the models read the
    two alike (0.96); the conversion goes the other way."""
    scales_a = temperature_scales(a)
    if not scales_a:
        return False
    scales_b = temperature_scales(b)
    return any(number in scales_b and scales_b[number] != s for number, s in scales_a.items())


def numbers_differ(a: str, b: str) -> bool:
    """A number that one text has and the other lacks, or writes to mean something else:
    "3 things" is not "the third thing", "in a second" not "in 2 seconds". "First" may
    stand on one side alone ("the first step" / "how do I start"), as "one" is no number
    but before what "1" counts on the other side ("one cup" / "1 cup"). "12k" is 12,000,
    and "two weeks" 14 days, when that reading makes the two agree."""
    if THOUSANDS.search(a) or THOUSANDS.search(b):
        if not forms_differ(a, b, number_forms(a, True), number_forms(b, True)):
            return False
        if thousands_apart(a, b) or thousands_apart(b, a):
            return True  # "5 followers" / "5k followers"
    counted_a, counted_b = spans_compared(a, b)
    return forms_differ(counted_a, counted_b, number_forms(counted_a), number_forms(counted_b))


def spans_compared(a: str, b: str) -> tuple[str, str]:
    """The two texts with their spans of weeks and years counted in days and months where
    their numbers differ as written ("two weeks" / "14 days"); else as written, so a unit
    swapped under one number stays a swapped word ("17 years old" / "17 months old").
    Most texts hold no such span: the numbers are then read once, by the caller."""
    shorter_a, shorter_b = in_short_units(a), in_short_units(b)
    if (shorter_a, shorter_b) == (a, b) or not forms_differ(a, b, number_forms(a), number_forms(b)):
        return a, b
    return shorter_a, shorter_b


# A span of time counted in a longer unit than the other text counts it in: "two weeks" /
# "14 days", "a fortnight", "a year" / "12 months".
SPAN_COUNTS = {**SMALL_NUMBERS, "a": 1, "an": 1, "couple of": 2}
LONG_SPAN = re.compile(
    rf"\b(?:(?P<n>\d+|{'|'.join(SPAN_COUNTS)})[ -](?P<unit>weeks?|years?)"
    r"|(?P<fortnight>a fortnight))\b",
    re.IGNORECASE,
)
SHORT_UNITS = {"week": (7, "days"), "year": (12, "months")}


def in_short_units(text: str) -> str:
    """The text with its spans of weeks and years counted in days and months."""
    lowered = text.lower()
    if "week" not in lowered and "year" not in lowered and "fortnight" not in lowered:
        return text  # most texts: a substring test is cheaper than the pattern

    def shorter(m: re.Match[str]) -> str:
        if m["fortnight"]:
            return "14 days"
        count = m["n"].lower()
        n = int(count) if count.isdigit() else SPAN_COUNTS[count]
        factor, unit = SHORT_UNITS[m["unit"].lower().removesuffix("s")]
        return f"{n * factor} {unit}"

    return LONG_SPAN.sub(shorter, text)


def thousands_apart(a: str, b: str) -> bool:
    """A number `a` writes with a "k" that `b` writes bare, with nothing after it that
    reads as the same "k" ("401(k)", "5km")."""
    counted = {m[1] for m in K_NUMBER.finditer(a)}
    return any(m[1] in counted for m in BARE_NUMBER.finditer(b))


K_NUMBER = re.compile(r"(?<![\d.,])(\d+(?:\.\d+)?)[kK]\b")
BARE_NUMBER = re.compile(r"(?<![\d.,])(\d+(?:\.\d+)?)(?![\d.,]*[\w(])")


def forms_differ(
    a: str, b: str, forms_a: dict[str, frozenset[str]], forms_b: dict[str, frozenset[str]]
) -> bool:
    """Whether texts `a` and `b`, whose numbers are `forms_a` and `forms_b`, differ on one."""
    for value in forms_a.keys() | forms_b.keys():
        kinds_a, kinds_b = forms_a.get(value, frozenset()), forms_b.get(value, frozenset())
        if not kinds_a or not kinds_b:
            if value == "1" and (kinds_a or kinds_b) == {ORDINAL}:
                continue
            if value == "1" and counted_alike(*((a, b) if kinds_a else (b, a))):
                continue
            return True
        if not (read_alike(kinds_a, kinds_b) and read_alike(kinds_b, kinds_a)):
            if kinds_a | kinds_b == AGE_FORMS and AGE.search(a) and AGE.search(b):
                continue  # "her 30th birthday" / "turning 30"
            return True
    return False


# Where an ordinal counts years, as a cardinal does: "my sister's 30th" / "turning 30".
AGE = re.compile(r"\b(?:birthdays?|bday|b-day|anniversary|turn(?:s|ing)?)\b", re.IGNORECASE)


def read_alike(kinds: frozenset[str], other: frozenset[str]) -> bool:
    """Each way one text writes a number is a way the other reads it."""
    return ROMAN_FORM in other or all(k == ROMAN_FORM or k in other for k in kinds)


def roman_value(numeral: str) -> int:
    """The value of a well-formed Roman numeral (a smaller digit before a larger subtracts)."""
    values = [ROMAN_VALUES[letter] for letter in numeral]
    return sum(-v if v < after else v for v, after in zip_longest(values, values[1:], fillvalue=0))


def negated(text: str) -> bool:
    """Whether the text holds an odd number of negations ("not" and "n't" alike; "egg-free"
    and "w/o eggs" say "without eggs"; "at no charge" and "invoice no" negate nothing)."""
    text = text.lower()
    # Substring checks first: most texts hold none of these forms, and a pattern costs more.
    if " no" in text:
        text = NOT_NEGATING.sub(" ", text)
    words = [w.replace("'", "").replace("’", "") for w in WORD.findall(text)]
    without = len(WITHOUT.findall(text)) if any(form in text for form in WITHOUT_HINTS) else 0
    return (sum(w in NEGATIONS for w in words) + without) % 2 == 1


# "No" that negates nothing: a price of nothing, or short for "number".
NOT_NEGATING = re.compile(
    r"\b(?:at|for|with|of) no (?:extra |additional )?(?:charge|cost|fee)s?\b"
    r"|\b(?:invoice|order|account|policy|phone|reference|ref|serial|tracking|case|ticket"
    r"|room|flight|seat|item|model|part) no\b"
)
# "Without" in other words: "w/o", "egg-free", "gluten free", "emoji-free", "eggless", and
# leaving something out ("skip the hashtags", "leave out any comments", "skipping two rows").
FREE_OF = (
    "gluten|dairy|sugar|egg|eggs|nut|nuts|fat|caffeine|alcohol|lactose|meat|soy|salt|oil"
    "|emoji|emojis|hashtag|hashtags|jargon|chemical|chemicals|fee|fees|tax|duty|ad|ads|fever"
)
WITHOUT = re.compile(
    rf"\bw/o\b|\b(?:{FREE_OF})[- ]free\b|\b(?:egg|sugar|meat|seed|bone|salt)less\b"
    r"|\b(?:skip(?:s|ped|ping)?|leave out|leaving out|omit(?:s|ted|ting)?)\b"
)
WITHOUT_HINTS = ("free", "less", "w/o", "skip", "leav", "omit")


def quoted(text: str) -> frozenset[str]:
    """The strings a text quotes; a fenced block's fences and language tag are no quotes
    ("```python" does not quote "python\ndef f(xs): ...")."""
    if "```" in text or "~~~" in text:
        text = CODE_FENCE.sub(" ", text)
    return frozenset(
        next(g for g in m.groups() if g).strip().lower() for m in QUOTED.finditer(text)
    )


CODE_FENCE = re.compile(r"(?:```|~~~)[\w+#-]*")


def other_quotes(a: str, b: str) -> bool:
    """A quoted string on one side that the other text does not hold, quoted or as plain
    words ("Pewdiepie" / PewDiePie is the same; "!=" / "==" is not)."""

    def held(quote: str, text: str) -> bool:
        words = WORD.findall(quote)
        plain = f" {' '.join(WORD.findall(text.lower()))} "
        return bool(words) and f" {' '.join(words)} " in plain

    quotes_a, quotes_b = quoted(a), quoted(b)
    return any(not held(q, b) for q in quotes_a - quotes_b) or any(
        not held(q, a) for q in quotes_b - quotes_a
    )


def identifiers(text: str) -> frozenset[str]:
    """Code identifiers, and the camel-cased names however they are cased ("iPhone" /
    "iphone" is one phone; a phone named on one side only is still a veto)."""
    code = {i for i in IDENTIFIER.findall(text) if i.lower() not in CAMEL_CASED_NAMES}
    return frozenset(code | set(CAMEL_CASED_NAME.findall(text.lower())))


def identifiers_differ(a: str, b: str) -> bool:
    """Whether one text has an identifier the other lacks; a text typed all in lowercase
    holds it lowercased ("Promise.allSettled" / "promise.allsettled", "mAh" / "mah"),
    where one that writes capitals elsewhere means the case ("userName" / "username").
    A unit of data is bits or bytes by its case ("100 Mbps" / "100 MBps")."""
    ids_a, ids_b = identifiers(a), identifiers(b)
    return data_units_recased(a, b) or (
        ids_a != ids_b and not (lowercased_in(ids_a - ids_b, b) and lowercased_in(ids_b - ids_a, a))
    )


# Bits or bytes, kilo to peta: "Mb" is a megabit, "MB" a megabyte ("mb" may be either).
DATA_UNIT = re.compile(r"\b[kKmMgGtTpP]i?[bB](?:ps|/s)?\b")


def data_units_recased(a: str, b: str) -> bool:
    """Whether the two texts write one unit of data in cases that tell bits from bytes."""
    units_a, units_b = data_units(a), data_units(b)
    return any(units_a[unit] != units_b[unit] for unit in units_a.keys() & units_b.keys())


def data_units(text: str) -> dict[str, str]:
    """Each unit of data a text writes with a capital, lowercased, to its bits-or-bytes part
    as written ("MBps" -> "Bps"; "GiB" is "B", as "GB" is); "mb" tells neither."""
    return {
        unit.lower(): unit[1:].replace("i", "")
        for unit in DATA_UNIT.findall(text)
        if unit != unit.lower()
    }


def lowercased_in(names: frozenset[str], text: str) -> bool:
    """Whether a text typed all in lowercase holds each of `names` lowercased."""
    return not names or (
        text == text.lower()
        and all(re.search(rf"(?<!\w){re.escape(name.lower())}(?!\w)", text) for name in names)
    )


CAMEL_CASED_NAMES = frozenset(
    """
iphone ipad ipod imac ios ipados icloud itunes imessage ebay macos watchos tvos visionos
jquery esim mrna
""".split()
)
CAMEL_CASED_NAME = re.compile(rf"\b(?:{'|'.join(sorted(CAMEL_CASED_NAMES))})(?![a-z])")


def opposite(a: str, b: str) -> bool:
    """One text says X where the other says its opposite (rise/fall, north/south, ...), or
    the word undone by a prefix (lock/unlock, bloquear/desbloquear, caricare/scaricare)."""
    words_a = set(WORD.findall(without_accents(a).lower()))
    words_b = set(WORD.findall(without_accents(b).lower()))
    only_a, only_b = words_a - words_b, words_b - words_a
    return any(
        (x in only_a and y in only_b) or (y in only_a and x in only_b) for x, y in OPPOSITES
    ) or any(undone(x, y) or undone(y, x) for x in only_a for y in only_b)


def undone(word: str, other: str) -> bool:
    """`other` is `word` with a prefix that reverses it, and `word` is a word of its own."""
    return (
        len(word) >= UNDONE_MIN
        and word.isalpha()
        and any(other == p + word for p in REVERSING_PREFIXES)
    )


# Technologies by the names users give them ("js", "JavaScript"), to one name each. A name
# guard leaves them to the technology slot (policies/prompts.py), which reads the aliases.
# fmt: off
TECH = {
    word: alias for alias, words in {
        "python": "python python3 py", "javascript": "javascript js ecmascript",
        "typescript": "typescript ts", "java": "java", "c++": "c++ cpp", "c#": "c# csharp",
        "go": "golang", "rust": "rust", "ruby": "ruby rails", "php": "php", "swift": "swift",
        "kotlin": "kotlin", "scala": "scala", "perl": "perl", "haskell": "haskell",
        "elixir": "elixir", "dart": "dart flutter", "lua": "lua", "matlab": "matlab",
        "julia": "julia", "sql": "sql", "mysql": "mysql", "postgresql": "postgres postgresql psql",
        "sqlite": "sqlite sqlite3", "mongodb": "mongodb mongo", "redis": "redis",
        "bash": "bash sh zsh shell", "powershell": "powershell", "html": "html",
        "css": "css scss sass tailwind", "react": "react reactjs", "vue": "vue vuejs",
        "angular": "angular", "svelte": "svelte", "django": "django", "flask": "flask",
        "fastapi": "fastapi", "node": "node nodejs node.js express", "spring": "spring",
        "excel": "excel", "sheets": "sheets", "windows": "windows", "macos": "macos mac osx",
        "linux": "linux ubuntu debian fedora", "ios": "ios iphone ipad", "android": "android",
        "pandas": "pandas", "numpy": "numpy", "pytorch": "pytorch torch", "tensorflow":
        "tensorflow", "docker": "docker", "kubernetes": "kubernetes k8s kubectl", "git": "git",
        "github": "github", "aws": "aws s3 ec2 lambda", "azure": "azure", "gcp": "gcp",
        "vim": "vim", "emacs": "emacs", "vscode": "vscode", "chrome": "chrome", "firefox":
        "firefox", "safari": "safari", "jquery": "jquery", "nginx": "nginx", "apache": "apache",
        "kafka": "kafka", "graphql": "graphql", "rest": "rest", "regex": "regex regexp",
        "async": "async asyncio", "jest": "jest", "pytest": "pytest", "npm": "npm yarn pnpm",
        "pip": "pip", "conda": "conda", "java8": "java8", "python2": "python2",
        "r": "tidyverse dplyr tidyr ggplot ggplot2 rstudio cran",
    }.items() for word in words.split()
}
# fmt: on


def names(text: str) -> frozenset[str]:
    """Capitalized words past the first (names, places, days, parties), lowercased; not
    ordinals or Roman numerals ("the Second World War", "World War II"): numbers_differ
    judges those; nor technologies ("JavaScript" / "JS"): the technology slot does."""
    found = NAME.findall(text)[1:] if text[:1].isupper() else NAME.findall(text)
    return frozenset(
        low
        for w in found
        if (low := w.lower()) not in NOT_NAMES
        and low not in TECH
        and low not in ORDINALS
        and not ROMAN.fullmatch(w)
    )


def other_names(a: str, b: str) -> bool:
    """Each text names something the other does not mention: a swapped name or date.

    A name present on one side only ("Donald Trump" / "Trump") is an addition, not a
    substitution, and passes.
    """
    # A name's forms may not be words of its text ("QX" of "QX7PLM"): both are compared.
    names_a, names_b = name_forms(a), name_forms(b)
    words_a, words_b = word_forms(a), word_forms(b)
    forms_a, forms_b = set(words_a) | names_a, set(words_b) | names_b
    added_a = {n for n in names_a - forms_b if not named_alike(n, forms_b, words_b)}
    added_b = {n for n in names_b - forms_a if not named_alike(n, forms_a, words_a)}
    # A name misspelt on one side ("Farenheit" / "Fahrenheit") is the same name; among
    # short names one letter more is as often another name ("Paris" / "PARI").
    slips = {
        (x, y)
        for x in added_a
        for y in added_b
        if max(len(x), len(y)) >= NAME_SLIP_MIN and misspelt(x, y)
    }
    added_a -= {x for x, _ in slips}
    added_b -= {y for _, y in slips}
    shared = names_a & names_b
    if added_a and added_b:
        return True
    return listed_beside(added_a, shared, a) or listed_beside(added_b, shared, b)


NAME_SLIP_MIN = 6  # letters of the longer of two names one edit apart, to read a slip
# What a place's name becomes when it names its people or things: "Europe" / "European",
# "Canada" / "Canadian", "Japan" / "Japanese", "Mexico" / "Mexican".
DEMONYM_ENDINGS = ("n", "an", "ian", "ean", "ese")
DEMONYM_STEM_MIN = 4
ABBREVIATION_MIN, ABBREVIATION_MAX = 2, 5  # letters of a name read as initials
DOTTED_INITIALS = re.compile(r"(?:[a-z]\.)+[a-z]\.?")


def named_alike(name: str, forms: set[str], words: list[str]) -> bool:
    """Whether a name is one of `forms` as its people's word, or the other way round, or
    the initials of consecutive `words` ("SLC" / "Salt Lake City", "WW" / "World War")."""
    if ABBREVIATION_MIN <= len(name) <= ABBREVIATION_MAX and name.isalpha():
        for i in range(len(words) - len(name) + 1):
            spelt = words[i : i + len(name)]
            if spelt[0] in FUNCTION_WORDS or spelt[-1] in FUNCTION_WORDS:
                continue
            if initials(spelt) == name:
                return True
    return any(
        longer in (stem + ending, stem[:-1] + ending)
        or (stem.endswith("y") and longer == stem[:-1])  # "Germany" / "German"
        for form in forms
        if len(form) >= DEMONYM_STEM_MIN
        for stem, longer in ((form, name), (name, form))
        for ending in DEMONYM_ENDINGS
    )


def listed_beside(added: set[str], shared: set[str], text: str) -> bool:
    """A name of `added` listed with one of `shared` ("Tokyo, Kyoto, Osaka, and Hiroshima"):
    one more item of a list, not more words for the same thing ("Donald Trump")."""
    if not added or not shared:
        return False
    lowered = text.lower()
    one, other = "|".join(map(re.escape, added)), "|".join(map(re.escape, shared))
    joint = r"(?:\s*,\s*(?:and\s+|or\s+|&\s+)?|\s+(?:and|or|&)\s+)"
    return bool(
        re.search(rf"\b(?:{one})\b{joint}(?:\w+{joint})*(?:{other})\b", lowered)
        or re.search(rf"\b(?:{other}){joint}(?:\w+{joint})*(?:{one})\b", lowered)
    )


# Other names of one country or service, as people write them (the forms name_forms reads).
NAME_ALIASES = {
    "america": "us", "american": "us", "usa": "us", "britain": "uk", "british": "uk",
    "fb": "facebook", "ig": "instagram",
}  # fmt: skip
SAME_NAMES = MONTH_NAMES | NAME_ALIASES


def name_forms(text: str) -> set[str]:
    """The forms of a text's names: "Wi-Fi" is "WiFi", "Jan" is "January", "U.S." is "US",
    "American" is "US"."""
    return {
        SAME_NAMES.get(form, form)
        for name in names(text)
        for form in word_forms(
            name.replace(".", "") if DOTTED_INITIALS.fullmatch(name) else name.replace("-", "")
        )
    }


def is_value(word: str) -> bool:
    """A size, a grade, a code or a unit rather than a word: short, with a digit in it, or
    what a number counts ("8 weeks old" / "8 months old": the number alone agrees)."""
    return len(word) <= VALUE_MAX or any(c.isdigit() for c in word) or word in UNITS


# Units, as word_forms writes them (singular, "inches" as "inche").
UNITS = frozenset("""
second minute hour day week month year decade century millisecond
mm cm meter metre km inch inche foot feet yard mile millimeter centimeter kilometer kilometre
gram kg kilo kilogram pound lb lbs ounce oz ton tonne
ml liter litre milliliter millilitre gallon cup tablespoon teaspoon tbsp tsp pint quart
byte kb mb gb tb
""".split())  # fmt: skip


def swapped_words(a: str, b: str) -> list[str]:
    """The meaningful words swapped, on both sides, where the texts are the same but for
    one or two words and a meaningful word was swapped for another word (not for another
    spelling or form of itself: see one_word); else none.

    "How many people died in the earthquake?" / "... were injured in ...": a minimal edit
    like this is how a different question most often hides inside a near-identical text;
    a rewording moves more words than that. But a synonym is a minimal edit too ("remove"
    / "delete"), so a swap is no veto but for a value: the calibration weighs it as a
    feature, and such a pair is served only where the verifier is sure enough.
    """
    forms_a, forms_b = word_forms(a), word_forms(b)
    words_a, words_b = Counter(forms_a), Counter(forms_b)
    only_a, only_b = words_a - words_b, words_b - words_a
    if not 0 < only_a.total() <= 2 or not 0 < only_b.total() <= 2:
        return []
    if (words_a & words_b).total() < 3:
        return []
    if "".join(forms_a) == "".join(forms_b):
        return []  # only spaces or hyphens moved: "e-mail" / "email", "180 C" / "180°C"
    if spelt_out(only_a, only_b, forms_b) or spelt_out(only_b, only_a, forms_a):
        return []  # "the UK" / "the United Kingdom"
    swapped_a = [w for w in only_a if meaningful(w) and not any(one_word(w, v) for v in only_b)]
    swapped_b = [w for w in only_b if meaningful(w) and not any(one_word(w, v) for v in only_a)]
    return swapped_a + swapped_b if swapped_a and swapped_b else []


def spelt_out(short: Counter[str], long: Counter[str], forms: list[str]) -> bool:
    """Whether the one word of `short` is the initials of the words of `long`, in the
    order `forms` (their text's words) holds them."""
    words = [w for w in forms if w in long]
    return short.total() == 1 and len(words) > 1 and next(iter(short)) == initials(words)


def initials(words: list[str]) -> str:
    return "".join(word[0] for word in words)


def one_word(a: str, b: str) -> bool:
    """Two spellings of one word: a typo, another form of it, or its short form."""
    return misspelt(a, b) or stem(a) == stem(b) or SHORT_FORMS.get(a, a) == SHORT_FORMS.get(b, b)


def stem(word: str) -> str:
    """The word without one of WORD_ENDINGS, where at least STEM_MIN letters are left."""
    for ending in WORD_ENDINGS:
        if word.endswith(ending) and len(word) - len(ending) >= STEM_MIN:
            return word[: -len(ending)]
    return word


def swapped_roles(a: str, b: str) -> bool:
    """The same words, but two parts trade places around a word that gives them roles:
    "Liverpool beat Manchester United" / "Manchester United beat Liverpool", "convert a
    string to an int" / "convert an int to a string". Embeddings and the cross-encoder
    barely see the difference. Parts that trade places around an order-free joint ("spot
    fixing and match fixing") keep the question, and so do parts side by side, which is
    how a part is moved ("from London to Paris" / "to Paris from London"). So two words
    side by side ("milk chocolate" / "chocolate milk") are left to the verifier.
    """
    words_a, words_b = word_forms(a), word_forms(b)
    if words_a == words_b or Counter(words_a) != Counter(words_b):
        return False
    differ = [i for i, (x, y) in enumerate(zip(words_a, words_b, strict=True)) if x != y]
    first, last = differ[0], differ[-1] + 1
    if last - first > SWAP_MAX_SPAN:
        return False
    swapped = False
    for start in range(max(0, first - SWAP_REACH), first + 1):
        for end in range(last, min(len(words_a), last + SWAP_REACH) + 1):
            for middle in swap_middles(words_a[start:end], words_b[start:end]):
                if order_free(middle):
                    return False
                swapped = True
    return swapped


def directions(text: str) -> set[tuple[str, str]]:
    """The (from, to) word pairs a text puts around a word that orders them: "madrid to
    boston", "celsius into fahrenheit", "faster than java" (the nearest words on either
    side that are not function words)."""
    words = [w for w in word_forms(text) if w not in JOINT_FILLERS]
    return {
        (words[i - 1], words[i + 1])
        for i in range(1, len(words) - 1)
        if words[i] in DIRECTED_JOINTS
        and words[i - 1] not in FUNCTION_WORDS
        and words[i + 1] not in FUNCTION_WORDS
    }


def turned_around(a: str, b: str) -> bool:
    """One text goes from X to Y where the other goes from Y to X, however each is worded
    ("from Madrid to Boston" / "boston to madrid?" scored 0.89): another request."""
    other_way = {(to, start) for start, to in directions(b) if start != to}
    return not directions(a).isdisjoint(other_way)


def order_free(middle: list[str]) -> bool:
    """Parts side by side (no middle), or around an order-free joint."""
    return not middle or tuple(w for w in middle if w not in JOINT_FILLERS) in ORDER_FREE_JOINTS


def swap_middles(part_a: list[str], part_b: list[str]) -> Iterator[list[str]]:
    """Each M for which part_a is P + M + Q and part_b is Q + M + P (P and Q not empty)."""
    size = len(part_a)
    for i in range(1, size):  # P = part_a[:i], which part_b must end with
        if part_b[size - i :] != part_a[:i]:
            continue
        for j in range(i, size):  # Q = part_a[j:], which part_b must start with
            if part_b[: size - j] == part_a[j:] and part_b[size - j : size - i] == part_a[i:j]:
                yield part_a[i:j]


def without_accents(text: str) -> str:
    """The text with its accents left out, as people often type it ("Reykjavík" /
    "Reykjavik", "situação" / "situacao")."""
    return "".join(c for c in normalize("NFD", text) if category(c) != "Mn")


def word_forms(text: str) -> list[str]:
    """The words of a text with the endings that do not change what is asked removed:
    possessives and plurals ("England's" / "England", "memes" / "meme"), accents; numbers spelt as
    Roman numerals or ordinals in digits are read as the number and the word ("II" is "2",
    "2nd" is "second"), which the numbers guard judges."""
    spelt = ROMAN.sub(lambda m: str(roman_value(m.group(0))), normalize("NFKC", text))
    spelt = without_accents(spelt)
    forms = []
    for word in WORD.findall(spelt.lower()):
        word = ORDINAL_DIGITS.get(word, word).replace("’", "'").removesuffix("'s")
        word = word.replace("'", "")  # "didn't" / "didnt"
        plural = len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is"))
        if plural and word not in FUNCTION_WORDS:
            word = word[:-1]
        forms.append(word)
    return forms


def misspelt(a: str, b: str) -> bool:
    """Two words one edit apart ("embarrassing" / "embarassing") are one word, unless
    both are KNOWN_WORDS.

    A letter swapped for another only in long words: among short ones that is as often
    another word (house/horse, grandma/grandpa) as a slip. A letter dropped or doubled
    ("runing", "reactt") or two neighbouring ones trading places ("imgaes") is a slip
    from five letters.
    """
    if a in KNOWN_WORDS and b in KNOWN_WORDS:
        return False
    if transposed(a, b):
        return True
    if abs(len(a) - len(b)) > 1 or a[0] != b[0] or not (a + b).isalpha():
        return False
    if len(a) == len(b):
        return len(a) >= MISSPELT_MIN and sum(x != y for x, y in zip(a, b, strict=True)) <= 1
    short, long = sorted((a, b), key=len)
    return len(long) >= DROPPED_MIN and any(
        long[:i] + long[i + 1 :] == short for i in range(len(long))
    )


def corrected(a: str, b: str, language: str) -> str | None:
    """Of two words one edit apart (see misspelt), the one that is a common word of the
    language when the other is not: the other misspells it ("persne" / "persone"). None
    for two common words ("hermano" / "hermana") or two rare ones. English words count in
    every language: prompts in any name code and things in English ("awiat" / "await")."""
    own, english = COMMON_WORDS.get(language, frozenset()), COMMON_WORDS["en"]
    a_common, b_common = (w in own or w in english for w in (a, b))
    if a_common == b_common or not misspelt(a, b):
        return None
    return a if a_common else b


def tech_slip(a: str, b: str) -> str | None:
    """Of a technology's name and the same name with two neighbouring letters traded that
    is no common word ("python" / "pyhton"), the name; None for two names ("scss" /
    "sass", "mssql" / "mysql") or any other edit: those are values."""
    if (a in TECH) == (b in TECH) or not transposed(a, b):
        return None
    name, slip = (a, b) if a in TECH else (b, a)
    return None if slip in COMMON_WORDS["en"] or slip in KNOWN_WORDS else name


def transposed(a: str, b: str) -> bool:
    """The same word of five letters or more with two neighbouring letters swapped."""
    if len(a) != len(b) or len(a) < TRANSPOSED_MIN or a == b:
        return False
    differ = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
    return (
        len(differ) == 2
        and differ[1] == differ[0] + 1
        and a[differ[0]] == b[differ[1]]
        and (a[differ[1]] == b[differ[0]])
    )


def meaningful(word: str) -> bool:
    """Not a function word, and not a number (the numbers guard judges those)."""
    return word not in FUNCTION_WORDS and word not in NUMBER_WORDS and not word.isdigit()


def unseen(text: str) -> Counter[str]:
    """The characters of a text that the models (an English WordPiece vocabulary) cannot
    tell from others: whatever is not ASCII, but for letters with accents (read as their
    base letter, "é" as "e") and typography (curly quotes, dashes, spaces, zero-width
    marks). The tokenizer reads emoji and most CJK as one unknown token, and strips "≠"
    to "=": "猫" / "狗", "🍕" / "🍔" and "x ≠ y" / "x = y" scored 0.87-0.95."""
    found: Counter[str] = Counter()
    for char in normalize("NFKC", text):
        if char.isascii():
            continue
        kind = category(char)
        if kind in TYPOGRAPHY or kind == "Mn" or char in INVERTED_MARKS:
            continue
        if kind[0] == "L" and normalize("NFD", char)[0].isascii():
            continue
        found[char] += 1
    return found


def other_unseen(a: Counter[str], b: Counter[str]) -> bool:
    """Characters the models cannot read that differ between two texts; but for symbols
    (emoji) on one side only: "why is the ocean salty? 🌊" asks what the plain question
    does, while "🍕" / "🍔" swapped is another question."""
    if a == b:
        return False
    symbols_a = {c for c in a if category(c) == "So"}
    symbols_b = {c for c in b if category(c) == "So"}
    if symbols_a and symbols_b:
        return True
    return {c: n for c, n in a.items() if c not in symbols_a} != {
        c: n for c, n in b.items() if c not in symbols_b
    }


ARROW = re.compile(r"\s*(?:→|⟶|➔|➜|➡|->|=>)\s*")
ARROW_WORD = re.compile(r"[^\W_]+")


def read_arrows(text: str, other: str) -> str:
    """The text with its arrows read as "to" ("Madrid → Boston" / "from Madrid to Boston")
    when the other text has arrows too (the roles' guard then compares their order), or
    says the two words around each arrow in the arrow's order. Else as written: the models
    cannot read an arrow, so one whose direction the other text does not confirm ("boston
    → madrid" / "from Madrid to Boston" scored 0.98) stays a character they cannot see."""
    if not ARROW.search(text) or ARROW.search(other):
        return ARROW.sub(" to ", text)
    said = ARROW_WORD.findall(other.lower())
    for m in ARROW.finditer(text):
        before = ARROW_WORD.findall(text[: m.start()].lower())[-1:]
        after = ARROW_WORD.findall(text[m.end() :].lower())[:1]
        if not (before and after and before[0] in said and after[0] in said):
            return text
        first_from = said.index(before[0])
        last_to = len(said) - 1 - said[::-1].index(after[0])
        if first_from > last_to:
            return text
    return ARROW.sub(" to ", text)


# The words for a currency whose sign the models cannot read ("150 €" / "150 euros").
CURRENCY_WORDS = {
    "€": ("euro", "euros", "eur"),
    "£": ("pound", "pounds", "gbp", "quid"),
    "¥": ("yen", "jpy", "yuan", "cny", "rmb"),
    "₹": ("rupee", "rupees", "inr"),
}


def read_currencies(text: str, other: str) -> str:
    """The text with a currency's sign written as the currency's word the other text uses
    for it ("150 €" / "150 euros"); a sign the other text does not name stays unseen."""
    for sign, names in CURRENCY_WORDS.items():
        if sign in text and sign not in other:
            said = [name for name in names if re.search(rf"\b{name}\b", other, re.IGNORECASE)]
            if said:
                text = text.replace(sign, f" {said[0]} ")
    return text


def screen(
    new_text: str, cached_text: str, negation_vetoes: bool = True, names_vetoes: bool = True
) -> tuple[str | None, list[str]]:
    """(The first guard that rejects the pair or None, the words swapped for others: see
    swapped_words). A swapped word is no veto but for a value: the calibration weighs it.
    With `negation_vetoes` false, a negation on one side only is left to the verifier (for
    rewordings: see policies.prompts.judge); with `names_vetoes` false, so are names."""
    new_text, cached_text = read_arrows(new_text, cached_text), read_arrows(cached_text, new_text)
    new_text, cached_text = (
        read_currencies(new_text, cached_text),
        read_currencies(cached_text, new_text),
    )
    if other_unseen(unseen(new_text), unseen(cached_text)):
        return "unseen-characters", []
    if numbers_differ(new_text, cached_text) or other_scales(new_text, cached_text):
        return "numbers", []
    if negation_vetoes and negated(new_text) != negated(cached_text):
        return "negation", []
    if other_quotes(new_text, cached_text):
        return "quoted", []
    if identifiers_differ(new_text, cached_text):
        return "identifiers", []
    if opposite(new_text, cached_text):
        return "opposites", []
    if names_vetoes and other_names(new_text, cached_text):
        return "names", []
    # A span in weeks against the same span in days is no unit swapped ("5 years" / "60 months").
    swapped = swapped_words(*spans_compared(new_text, cached_text))
    if any(is_value(word) for word in swapped):
        return "swapped-word", []  # "size M" / "size L", "#1E90FF": the models barely see it
    if swapped_roles(new_text, cached_text) or turned_around(new_text, cached_text):
        return "swapped-roles", []
    return None, swapped
