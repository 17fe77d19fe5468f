"""Turn what a speech recogniser writes into tokens, numbers and letters.

Recognisers disagree on how they write the same words: Deepgram writes "March 3, 1984" and
"555-123-4567"; PocketSphinx writes "march third nineteen eighty four" and "five five five".
Every extractor works on the same :func:`tokens` and reads numbers through
:func:`number_chunks`, which keeps the grouping the caller used ("nineteen eighty four" is two
groups, 19 and 84) because dates, phone numbers and house numbers each combine groups
differently.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_TOKEN = re.compile(r"\d+(?:st|nd|rd|th)?|[a-z]+(?:['-][a-z]+)*")

UNITS = {
    "zero": 0,
    "oh": 0,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
}
TEENS = {
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
}
TENS = {
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fourty": 40,
    "fifty": 50,
    "sixty": 60,
    "seventy": 70,
    "eighty": 80,
    "ninety": 90,
}
ORDINAL_UNITS = {
    "first": 1,
    "second": 2,
    "third": 3,
    "fourth": 4,
    "fifth": 5,
    "sixth": 6,
    "seventh": 7,
    "eighth": 8,
    "ninth": 9,
}
ORDINAL_TEENS = {
    "tenth": 10,
    "eleventh": 11,
    "twelfth": 12,
    "thirteenth": 13,
    "fourteenth": 14,
    "fifteenth": 15,
    "sixteenth": 16,
    "seventeenth": 17,
    "eighteenth": 18,
    "nineteenth": 19,
}
ORDINAL_TENS = {"twentieth": 20, "thirtieth": 30}
ORDINALS = {**ORDINAL_UNITS, **ORDINAL_TEENS, **ORDINAL_TENS}
REPEATERS = {"double": 2, "triple": 3}
_NUMBER_WORDS = frozenset({*UNITS, *TEENS, *TENS, *ORDINALS, "hundred", "thousand"})

DIGIT_WORDS = ("zero", "oh", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
MONTHS = {
    "january": 1,
    "jan": 1,
    "february": 2,
    "feb": 2,
    "march": 3,
    "mar": 3,
    "april": 4,
    "apr": 4,
    "may": 5,
    "june": 6,
    "jun": 6,
    "july": 7,
    "jul": 7,
    "august": 8,
    "aug": 8,
    "september": 9,
    "sept": 9,
    "sep": 9,
    "october": 10,
    "oct": 10,
    "november": 11,
    "nov": 11,
    "december": 12,
    "dec": 12,
}
MONTH_NAMES = (
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
)

# How letters are said: their names, homophones a recogniser may write, and the NATO alphabet.
LETTER_WORDS: dict[str, str] = {
    **{chr(code): chr(code) for code in range(ord("a"), ord("z") + 1)},
    "ay": "a",
    "bee": "b",
    "be": "b",
    "see": "c",
    "sea": "c",
    "cee": "c",
    "dee": "d",
    "ee": "e",
    "ef": "f",
    "eff": "f",
    "gee": "g",
    "aitch": "h",
    "haitch": "h",
    "eye": "i",
    "jay": "j",
    "kay": "k",
    "el": "l",
    "ell": "l",
    "em": "m",
    "en": "n",
    "oh": "o",
    "pee": "p",
    "pea": "p",
    "cue": "q",
    "queue": "q",
    "are": "r",
    "ar": "r",
    "es": "s",
    "ess": "s",
    "tee": "t",
    "tea": "t",
    "you": "u",
    "vee": "v",
    "ex": "x",
    "why": "y",
    "wye": "y",
    "zee": "z",
    "zed": "z",
}
NATO: dict[str, str] = {
    "alpha": "a",
    "alfa": "a",
    "bravo": "b",
    "charlie": "c",
    "delta": "d",
    "echo": "e",
    "foxtrot": "f",
    "golf": "g",
    "hotel": "h",
    "india": "i",
    "juliet": "j",
    "juliett": "j",
    "kilo": "k",
    "lima": "l",
    "mike": "m",
    "november": "n",
    "oscar": "o",
    "papa": "p",
    "quebec": "q",
    "romeo": "r",
    "sierra": "s",
    "tango": "t",
    "uniform": "u",
    "victor": "v",
    "whiskey": "w",
    "whisky": "w",
    "xray": "x",
    "yankee": "y",
    "zulu": "z",
}

FILLERS = frozenset({"um", "uh", "uhm", "umm", "er", "erm", "ah", "hmm", "mm", "like", "well"})


def normalize(text: str) -> str:
    """Lower-case text with typographic quotes made plain and runs of spaces collapsed."""
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("\u201c", '"')
    text = text.replace("\u201d", '"').replace("x-ray", "xray").replace("X-ray", "xray")
    return " ".join(text.lower().split())


def tokens(text: str) -> list[str]:
    """Words and numerals of ``text``; punctuation only separates them.

    A hyphen joins a word ("smith-jones") unless it joins letters or numbers, which are said
    one by one ("s-m-y-t-h", "twenty-three").
    """
    out: list[str] = []
    for token in _TOKEN.findall(normalize(text)):
        parts = token.split("-")
        if len(parts) > 1 and all(len(p) == 1 or p in _NUMBER_WORDS for p in parts):
            out.extend(parts)
        else:
            out.append(token)
    return out


@dataclass(frozen=True)
class Chunk:
    """One group of a spoken or written number, as the caller grouped it.

    ``digits`` keeps leading zeros ("oh five" is "05") and ``start``/``end`` are token
    positions, so that callers can tell adjacent groups from separated ones.
    """

    value: int
    digits: str
    ordinal: bool
    start: int
    end: int  # exclusive


def _numeral(token: str) -> tuple[int, bool] | None:
    match = re.fullmatch(r"(\d+)(st|nd|rd|th)?", token)
    if not match:
        return None
    return int(match.group(1)), match.group(2) is not None


def _below_hundred(words: list[str], i: int) -> tuple[int, bool, int] | None:
    """A number below one hundred at ``words[i]``: (value, ordinal, next position)."""
    word = words[i]
    if word in TENS:
        after = words[i + 1] if i + 1 < len(words) else ""
        if after in UNITS and after not in ("zero", "oh"):
            return TENS[word] + UNITS[after], False, i + 2
        if after in ORDINAL_UNITS:
            return TENS[word] + ORDINAL_UNITS[after], True, i + 2
        return TENS[word], False, i + 1
    if word in TEENS:
        return TEENS[word], False, i + 1
    if word in ORDINALS:
        return ORDINALS[word], True, i + 1
    if word in UNITS:
        return UNITS[word], False, i + 1
    return None


def _with_scale(words: list[str], i: int, value: int, nxt: int) -> tuple[int, int]:
    """Apply "hundred" / "thousand": "one hundred twenty three", "two thousand and five"."""
    if nxt < len(words) and words[nxt] == "thousand" and value < 100:
        value, nxt = value * 1000, nxt + 1
        rest = _rest_after_scale(words, nxt)
        if rest:
            value, nxt = value + rest[0], rest[1]
        return value, nxt
    if nxt < len(words) and words[nxt] == "hundred" and value < 100:
        value, nxt = value * 100, nxt + 1
        rest = _rest_after_scale(words, nxt, limit=100)
        if rest:
            value, nxt = value + rest[0], rest[1]
    return value, nxt


def _rest_after_scale(words: list[str], i: int, limit: int = 1000) -> tuple[int, int] | None:
    if i < len(words) and words[i] == "and":
        i += 1
    if i >= len(words):
        return None
    below = _below_hundred(words, i)
    if below is None or below[1]:
        return None
    value, _, nxt = below
    if limit > 100 and nxt < len(words) and words[nxt] == "hundred":
        value, nxt = value * 100, nxt + 1
        rest = _rest_after_scale(words, nxt, limit=100)
        if rest:
            value, nxt = value + rest[0], rest[1]
    return value, nxt


def number_chunks(words: list[str]) -> list[Chunk]:
    """Every number in ``words``, one :class:`Chunk` per group the caller said.

    "oh five" is one group ("05"), "double five" is "55", "twenty three" is 23, "nineteen
    eighty four" is two groups (19, 84), "two thousand and five" is 2005, "3rd" is ordinal 3.
    """
    chunks: list[Chunk] = []
    i = 0
    while i < len(words):
        word = words[i]
        numeral = _numeral(word)
        if numeral is not None:
            chunks.append(Chunk(numeral[0], re.sub(r"\D", "", word), numeral[1], i, i + 1))
            i += 1
            continue
        if word in REPEATERS and i + 1 < len(words) and words[i + 1] in UNITS:
            digit = str(UNITS[words[i + 1]])
            repeated = digit * REPEATERS[word]
            chunks.append(Chunk(int(repeated), repeated, False, i, i + 2))
            i += 2
            continue
        if word in ("oh", "zero") and i + 1 < len(words) and words[i + 1] in UNITS:
            unit = UNITS[words[i + 1]]
            chunks.append(Chunk(unit, f"0{unit}", False, i, i + 2))
            i += 2
            continue
        below = _below_hundred(words, i)
        if below is None:
            i += 1
            continue
        value, ordinal, nxt = below
        if not ordinal:
            value, nxt = _with_scale(words, i, value, nxt)
        chunks.append(Chunk(value, str(value), ordinal, i, nxt))
        i = nxt
    return chunks


def digit_string(words: list[str]) -> str:
    """All the digits said, in order: "five five five twelve thirty four" is "5551234"."""
    return "".join(chunk.digits for chunk in number_chunks(words))


@dataclass(frozen=True)
class LetterRun:
    """Consecutive spelled letters: "s m y t h", "es em why", "sierra mike", "s as in sam".

    ``letters`` is upper case with any "-" or "'" the caller said; ``single`` counts letters
    said as a bare letter or a NATO word, which tells spelling apart from ordinary words that
    sound like letters ("are you" is not "R U").
    """

    letters: str
    start: int
    end: int  # exclusive
    single: int


def letter_runs(words: list[str]) -> list[LetterRun]:
    """Every run of spelled letters in ``words``.

    Understands "s m y t h", "es em why tee aitch", "sierra mike", "s as in sam",
    "m for mary", "double t", and "dash" / "hyphen" / "apostrophe" between letters.
    """
    runs: list[LetterRun] = []
    out: list[str] = []
    start = single = 0
    i = 0

    def close(end: int) -> None:
        nonlocal out, single
        letters = "".join(out).strip("-'").upper()
        if letters:
            runs.append(LetterRun(letters, start, end, single))
        out, single = [], 0

    while i < len(words):
        word = words[i]
        letter = _letter(word)
        repeat = REPEATERS.get(word, 0)
        if repeat and i + 1 < len(words) and _letter(words[i + 1]):
            letter, word = _letter(words[i + 1]) * repeat, words[i + 1]
            i += 1
        if letter:
            if not out:
                start = i
            out.append(letter)
            single += 1 if len(word) == 1 or word in NATO else 0
            i += 1
            # "s as in sam", "m for mary", "s like sam": the example word is not a letter.
            if i + 1 < len(words) and words[i] in ("as", "for", "like"):
                as_in = words[i] == "as" and i + 2 < len(words) and words[i + 1] == "in"
                single += 1
                i += 3 if as_in else 2
            continue
        if out and word in ("dash", "hyphen"):
            out.append("-")
        elif out and word == "apostrophe":
            out.append("'")
        elif out and word not in FILLERS:
            close(i)
        i += 1
    close(len(words))
    return runs


def _letter(word: str) -> str:
    return LETTER_WORDS.get(word) or NATO.get(word) or ""
