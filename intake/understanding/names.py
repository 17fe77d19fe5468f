"""Names: said whole, spelled letter by letter, or corrected ("Smith with a y").

A name said whole is only as good as the recogniser's guess at its spelling, which is why the
conversation reads names back and asks for spelling; spelled letters win over the recogniser's
word whenever the caller spelled.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rapidfuzz import fuzz

from intake.understanding.spoken import FILLERS, LetterRun, letter_runs, tokens

# Words that are not part of a name, whatever the recogniser heard around it.
_NOT_NAMES = FILLERS | {
    "a",
    "about",
    "actually",
    "am",
    "an",
    "and",
    "appointment",
    "as",
    "calling",
    "correct",
    "doctor",
    "for",
    "hello",
    "hi",
    "i",
    "i'm",
    "im",
    "is",
    "it",
    "it's",
    "its",
    "just",
    "last",
    "first",
    "me",
    "mean",
    "meant",
    "middle",
    "my",
    "name",
    "name's",
    "names",
    "no",
    "nope",
    "not",
    "oh",
    "okay",
    "ok",
    "please",
    "patient",
    "right",
    "so",
    "sorry",
    "speaking",
    "sure",
    "that",
    "that's",
    "thats",
    "the",
    "this",
    "wait",
    "with",
    "yeah",
    "yes",
    "yep",
}
# Words after which the name is over: "jane doe and i'm calling about ...".
_NAME_ENDS = frozenset(
    {"and", "calling", "i'm", "im", "i", "from", "my", "here", "speaking", "but", "because"}
)
_PARTICLES = frozenset({"de", "del", "della", "da", "di", "van", "von", "der", "den", "la", "le"})
_FIRST_LAST = re.compile(r"\bfirst name (?:is )?(?P<first>[a-z'-]+)")
_LAST_FIRST = re.compile(
    r"\blast name (?:is )?(?P<last>[a-z'-]+(?: (?!first\b|and\b|my\b)[a-z'-]+){0,2})"
)
_WITH_LETTER = re.compile(
    r"\bwith (?:a |an |two |double )?(?P<letter>why|wye|eye|[a-z]{1,2})(?:'?s| s\b)?"
    r"(?: (?:instead of|not) (?:a |an )?(?P<instead>why|wye|eye|[a-z]{1,2}))?"
    r"(?P<end> at the end)?\b"
)
_LETTER_WORD = {"why": "y", "wye": "y", "ee": "e", "ie": "ie", "ay": "a", "eye": "i", "oh": "o"}
_SOUND_ALIKE = {"y": "i", "i": "y", "k": "c", "c": "k", "z": "s", "s": "z", "f": "ph"}


def name_case(name: str) -> str:
    """ "o'brien" -> "O'Brien", "smith-jones" -> "Smith-Jones", "de la cruz" -> "De La Cruz"."""
    return re.sub(r"[a-z]+", lambda m: m.group(0).capitalize(), name.lower())


@dataclass(frozen=True)
class HeardName:
    first: str | None = None
    last: str | None = None
    spelled: str | None = None
    confidence: float = 0.0


def apply_letter_hint(base: str, text: str) -> str | None:
    """Apply "with a y" / "with two t's" / "with an e at the end" to ``base``; None if unsaid.

    Heuristics for the common corrections: the said letter replaces its sound-alike (Smith
    -> Smyth, Clark with a k), "-son" becomes "-sen" with an e, an e or h otherwise goes on
    the end (Clarke, Sarah), and "two t's" doubles the letter. The caller hears the result
    read back, so a wrong guess is corrected on the next turn rather than stored.
    """
    match = _WITH_LETTER.search(text.lower())
    if not match:
        return None
    letter = _LETTER_WORD.get(match.group("letter"), match.group("letter"))
    if len(letter) > 1 and letter != "ie":
        return None
    word = base.lower()
    doubled = re.search(r"\bwith (two|double) ", match.group(0))
    if doubled:
        position = word.rfind(letter)
        return name_case(word[:position] + letter + word[position:]) if position >= 0 else None
    instead = match.group("instead")
    if instead:
        instead = _LETTER_WORD.get(instead, instead)
        position = word.rfind(instead)
        if position >= 0:
            return name_case(word[:position] + letter + word[position + len(instead) :])
        return None
    if match.group("end"):
        return name_case(word + letter)
    if letter == "e" and word.endswith("son"):
        return name_case(word[:-3] + "sen")
    alike = _SOUND_ALIKE.get(letter)
    if alike and alike in word and letter not in word:
        position = word.rfind(alike)
        return name_case(word[:position] + letter + word[position + len(alike) :])
    if letter == "h" and word and word[-1] not in "aeiouy" and "h" not in word:
        if word[0] in "tcgpsr":  # Tomas -> Thomas
            return name_case(word[0] + "h" + word[1:])
        vowel = re.search(r"[aeiou]", word)  # Jon -> John
        if vowel:
            return name_case(word[: vowel.end()] + "h" + word[vowel.end() :])
    if letter in ("e", "h") and not word.endswith(letter):
        return name_case(word + letter)
    return name_case(word) if letter in word else None


def without_hint(text: str) -> tuple[str, bool]:
    """``text`` without its "with a y" hint, so that the hint is not read as spelling."""
    match = _WITH_LETTER.search(text)
    if not match:
        return text, False
    return f"{text[: match.start()]} {text[match.end() :]}".strip(), True


def spelling_run(words: list[str], *, strict: bool) -> LetterRun | None:
    """The longest spelled run; ``strict`` wants bare letters (inside a sentence)."""
    runs = [
        run
        for run in letter_runs(words)
        if len(run.letters) >= 2 and (not strict or run.single >= _letter_count(run))
    ]
    return max(runs, key=lambda run: len(run.letters), default=None)


def _letter_count(run: LetterRun) -> int:
    return len(run.letters.replace("-", "").replace("'", ""))


def _name_words(words: list[str]) -> list[str]:
    kept: list[str] = []
    for word in words:
        if kept and word in _NAME_ENDS:
            break
        if word in _NOT_NAMES or not re.fullmatch(r"[a-z][a-z'-]*", word):
            continue
        kept.append(word)
    return kept


def _split(name_words: list[str]) -> tuple[str | None, str | None]:
    if not name_words:
        return None, None
    if len(name_words) == 1:
        return name_case(name_words[0]), None
    last_start = len(name_words) - 1
    while last_start > 1 and name_words[last_start - 1] in _PARTICLES:
        last_start -= 1
    return name_case(name_words[0]), name_case(" ".join(name_words[last_start:]))


def place_name(name: str, read_back: str) -> tuple[str | None, str | None]:
    """Whether one corrected name is the first or the last: the read-back word it is closest
    to; the last name when nothing was read back (corrections are mostly of surnames)."""
    said = read_back.split()
    if len(said) >= 2:
        first_score = fuzz.ratio(name.lower(), said[0].lower())
        last_score = fuzz.ratio(name.lower(), said[-1].lower())
        if first_score > last_score:
            return name, None
    return None, name


def parse_name(text: str) -> HeardName:
    """A first and last name said whole, perhaps followed by spelling or a letter hint."""
    lowered = " ".join(tokens(text))
    words = without_hint(lowered)[0].split()
    run = spelling_run(words, strict=True)
    spoken = [w for i, w in enumerate(words) if not run or not run.start <= i < run.end]
    first = _FIRST_LAST.search(lowered)
    last = _LAST_FIRST.search(lowered)
    if first or last:
        given = name_case(first.group("first")) if first else None
        family = name_case(last.group("last")) if last else None
        return HeardName(given, family, None, 0.85)
    given, family = _split(_name_words(spoken))
    spelled = run.letters if run else None
    if spelled:
        # The spelling replaces whichever said name it spells ("Jane Doe, D O E").
        if family and fuzz.ratio(family.lower(), spelled.lower()) >= 50:
            family = name_case(spelled)
        elif given and family is None and fuzz.ratio(given.lower(), spelled.lower()) >= 50:
            given = name_case(spelled)
        elif given and family is None:
            family = name_case(spelled)
    hinted_word = family or given
    if hinted_word and (hinted := apply_letter_hint(hinted_word, lowered)):
        family, given = (hinted, given) if family else (None, hinted)
        spelled = hinted.upper()
    if given and family:
        return HeardName(given, family, spelled, 0.85)
    if given or family:
        return HeardName(given, family, spelled, 0.75 if spelled else 0.5)
    return HeardName()


def parse_spelling(text: str, *, base: str = "") -> tuple[str | None, float]:
    """Letters of a name: "S M Y T H", "s as in sam ...", or "smith with a y" (a correction).

    ``base`` is the name being spelled, for a bare "with a y".
    """
    lowered = " ".join(tokens(text))
    rest, hinted_said = without_hint(lowered)
    run = spelling_run(rest.split(), strict=False)
    if run is not None and (run.single or len(run.letters) >= 3):
        return run.letters, 0.9 if run.single >= _letter_count(run) else 0.7
    said = _name_words(rest.split())
    word = said[-1] if said else base
    if word and (hinted := apply_letter_hint(word, lowered)):
        return hinted.upper(), 0.75
    if said and len(said) == 1:
        return said[0].upper(), 0.4
    return None, 0.0
