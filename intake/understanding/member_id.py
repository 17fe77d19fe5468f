"""Insurance member IDs, read out letter by letter and digit by digit.

The result is upper-case letters and digits only, in the order said: "x j nine eight seven"
is XJ987, "double five" is 55, and "oh" is a zero (on an insurance card an O is rare and a
zero common; the read-back settles the rest).
"""

from __future__ import annotations

import re

from intake.understanding.spoken import (
    FILLERS,
    LETTER_WORDS,
    NATO,
    REPEATERS,
    UNITS,
    normalize,
    number_chunks,
    tokens,
)

_LEAD_IN = re.compile(
    r"^.*?\b(member id( number)?|subscriber id|policy number|id number|the id|my id|"
    r"the number|it'?s|it is|that'?s|that is)( is| it'?s|,)?\s+"
)
_TRAILER = re.compile(r"\s+(i think|i believe|i guess|i'?m pretty sure)[.!]?$")
_SKIP = FILLERS | {"dash", "hyphen", "space", "then", "and", "capital", "letter", "number"}
# Letters a recogniser wrote as a capitalised group ("XJ" in "XJ987"): only those are taken
# literally, so that ordinary words are never read as part of an ID.
_WRITTEN_LETTERS = re.compile(r"(?<![A-Za-z])([A-Z]{1,4})(?=\d|[^A-Za-z]|$)")
_LETTERS_BEFORE_DIGITS = re.compile(r"(?<![a-z])([a-z]{1,4})(?=\d)")
MIN_LENGTH = 4
MAX_LENGTH = 20


def _token_value(words: list[str], i: int, written: frozenset[str]) -> tuple[str, int] | None:
    """The characters spelled by ``words[i]`` and how many words it took."""
    word = words[i]
    following = words[i + 1] if i + 1 < len(words) else ""
    if word in REPEATERS and following and following not in UNITS:
        letter = LETTER_WORDS.get(following) or NATO.get(following)
        if letter:
            return letter.upper() * REPEATERS[word], 2
    letter = NATO.get(word) or (LETTER_WORDS.get(word) if word not in UNITS else None)
    if letter:
        step = 1
        # "s as in sam", "m for mary": the example word is not part of the ID.
        if following in ("as", "for", "like") and i + 2 < len(words):
            step = 4 if following == "as" and words[i + 2] == "in" and i + 3 < len(words) else 3
        return letter.upper(), step
    if word in written:
        return word.upper(), 1
    return None


def normalize_member_id(text: str) -> tuple[str | None, float]:
    """The member ID in ``text`` and how sure the parse is; None when it is not one."""
    written = frozenset(
        [group.lower() for group in _WRITTEN_LETTERS.findall(text) if group != "I"]
        + _LETTERS_BEFORE_DIGITS.findall(text.lower())
    )
    spoken = _TRAILER.sub("", _LEAD_IN.sub("", normalize(text)))
    words = tokens(spoken)
    chunks = {chunk.start: chunk for chunk in number_chunks(words)}
    out: list[str] = []
    unknown = 0
    i = 0
    while i < len(words):
        chunk = chunks.get(i)
        if chunk is not None:
            out.append(chunk.digits)
            i = chunk.end
            continue
        if words[i] in _SKIP:
            i += 1
            continue
        value = _token_value(words, i, written)
        if value is None:
            unknown += 1
            i += 1
            continue
        out.append(value[0])
        i += value[1]
    member_id = "".join(out)
    if (
        not MIN_LENGTH <= len(member_id) <= MAX_LENGTH
        or not re.search(r"\d", member_id)
        or unknown > 1
    ):
        return None, 0.0
    return member_id, 0.9 if unknown == 0 else 0.6
