"""Match what the caller named against the clinic's own lists: carriers and providers.

Only names from the clinic's lists come out (or "self-pay" / "any"): a carrier that is not
accepted comes back as ``carrier=None`` with what was heard, so the conversation can say so
instead of booking an uncovered visit. Matching is fuzzy (rapidfuzz) over word windows of
the utterance, because recognisers misspell names ("etna", "signa") and callers wrap them in
sentences ("I've got Blue Cross through my work").
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from rapidfuzz import fuzz
from rapidfuzz.utils import default_process

from intake.understanding.spoken import tokens
from intake.understanding.types import ANY_PROVIDER, SELF_PAY

CARRIER_CUTOFF = 85.0
PROVIDER_CUTOFF = 80.0

# What callers say -> the carrier's usual name, which is then matched to the clinic's list.
CARRIER_ALIASES = {
    "blue cross": "Blue Cross Blue Shield",
    "blue shield": "Blue Cross Blue Shield",
    "bcbs": "Blue Cross Blue Shield",
    "b c b s": "Blue Cross Blue Shield",
    "bluecross": "Blue Cross Blue Shield",
    "united": "UnitedHealthcare",
    "united health": "UnitedHealthcare",
    "united healthcare": "UnitedHealthcare",
    "uhc": "UnitedHealthcare",
    "u h c": "UnitedHealthcare",
    "etna": "Aetna",
    "signa": "Cigna",
    "kaiser": "Kaiser Permanente",
    "tricare": "TRICARE",
    "tri care": "TRICARE",
    "medicare": "Medicare",
    "medicaid": "Medicaid",
    "humana": "Humana",
    "oscar": "Oscar Health",
    "ambetter": "Ambetter",
    "molina": "Molina Healthcare",
}
_SELF_PAY = re.compile(
    r"\b(self[- ]?pay(ing)?|no insurance|(don'?t|do not) have (any )?insurance|not insured|"
    r"uninsured|pay(ing)? (with )?cash|cash pay|out of pocket|pay(ing)? (for it )?myself|"
    r"private pay|without insurance|no coverage)\b"
)
_CARRIER_LEAD_IN = re.compile(
    r"\b(i have|i've got|i got|we have|it'?s|it is|my insurance is|insurance is|i'?m with|"
    r"i am with|through|the|my|insurance|plan|coverage|um|uh|it|called|carrier|is|with)\b"
)
_ANYONE = re.compile(
    r"\b(any ?one|any ?body|any (doctor|provider|of them)|no preference|(doesn'?t|does not) matter|"
    r"(don'?t|do not) care|whoever|first available|whichever|either (one|is fine)|not picky|"
    r"no one in particular|(don'?t|do not) mind|no particular)\b"
)
_TITLES = re.compile(r"\b(dr|doctor|nurse practitioner|np|pa|md|the)\b\.?")


@dataclass(frozen=True)
class CarrierMatch:
    carrier: str | None  # canonical name from the accepted list, or "self-pay"
    heard: str | None  # what the caller named, accepted or not
    score: float  # 0..100


def _windows(words: Sequence[str], size: int) -> Iterable[str]:
    for width in {max(1, size - 1), size, size + 1}:
        for start in range(0, max(1, len(words) - width + 1)):
            yield " ".join(words[start : start + width])


def best_window(phrase: str, words: Sequence[str]) -> float:
    """How well ``phrase`` matches any run of about as many words in ``words`` (0..100)."""
    target = default_process(phrase)
    if not target or not words:
        return 0.0
    size = len(target.split())
    return max(
        (fuzz.ratio(target, window) for window in _windows(words, size)),
        default=0.0,
    )


def _closest(name: str, choices: Sequence[str], cutoff: float) -> str | None:
    scored = [
        (fuzz.token_set_ratio(name, choice, processor=default_process), choice)
        for choice in choices
    ]
    best = max(scored, default=(0.0, ""))
    return best[1] if best[0] >= cutoff else None


def match_carrier(text: str, accepted: Sequence[str]) -> CarrierMatch:
    """The accepted carrier the caller named, or what they named when it is not accepted."""
    lowered = " ".join(tokens(text))
    if _SELF_PAY.search(lowered):
        return CarrierMatch(SELF_PAY, SELF_PAY, 100.0)
    words = [default_process(word) for word in lowered.split()]
    candidates: list[tuple[str, str]] = [(name, name) for name in accepted]
    candidates += list(CARRIER_ALIASES.items())
    score, said, usual = max(
        ((best_window(phrase, words), phrase, usual) for phrase, usual in candidates),
        default=(0.0, "", ""),
    )
    if score >= CARRIER_CUTOFF:
        carrier = usual if usual in accepted else _closest(usual, accepted, CARRIER_CUTOFF)
        return CarrierMatch(carrier, usual if usual else said, score)
    heard = _CARRIER_LEAD_IN.sub(" ", lowered)
    heard = " ".join(heard.split())
    return CarrierMatch(None, heard.title() if heard else None, score)


def _provider_variants(name: str) -> list[str]:
    bare = " ".join(_TITLES.sub(" ", name.lower().replace(".", " ")).split())
    parts = bare.split()
    variants = [bare]
    if len(parts) > 1:
        variants.append(parts[-1])  # "patel"
    return variants


def match_provider(text: str, names: Sequence[str]) -> tuple[str | None, float]:
    """The provider the caller asked for ("any" for no preference) and the match score."""
    lowered = " ".join(tokens(text))
    if _ANYONE.search(lowered):
        return ANY_PROVIDER, 100.0
    words = _TITLES.sub(" ", lowered).split()
    scored: list[tuple[float, str]] = []
    for name in names:
        best = 0.0
        for variant in _provider_variants(name):
            # Short names ("Li", "Ng") match only exactly: a fuzzy two-letter match is noise.
            cutoff = 100.0 if len(variant) <= 3 else PROVIDER_CUTOFF
            score = best_window(variant, words)
            if score >= cutoff:
                best = max(best, score + (1.0 if " " in variant else 0.0))
        if best:
            scored.append((best, name))
    if not scored:
        return None, 0.0
    scored.sort(reverse=True)
    if len(scored) > 1 and scored[0][0] - scored[1][0] < 1.0:
        return None, 0.0  # two providers match equally well ("Dr. Patel" when there are two)
    return scored[0][1], min(100.0, scored[0][0])
