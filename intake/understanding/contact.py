"""Phone numbers and e-mail addresses, written or spelled out loud.

Phone numbers are validated with phonenumbers (region US) and returned in E.164; a number that
is possible but not valid for its region (a misheard area code, say) comes back with a low
confidence so the read-back catches it. E-mail addresses are rebuilt from their spoken form
("jane dot doe at example dot com") and checked for shape only: whether the mailbox exists is
not something a phone call can know.
"""

from __future__ import annotations

import re

import phonenumbers

from intake.understanding.spoken import FILLERS, letter_runs, number_chunks, tokens

REGION = "US"
_SAME_NUMBER = re.compile(
    r"\b(this (number|phone|one)|the (number|phone|one) (i'?m|i am) calling (from|on)|same number|"
    r"number (i'?m|i am) calling from|the one (i'?m|i am) on|caller id)\b"
)


def phone_e164(text: str, *, caller_number: str = "") -> tuple[str | None, float]:
    """The phone number in ``text`` in E.164, and how sure the parse is.

    "The number I'm calling from" resolves to ``caller_number`` when the call has one.
    """
    lowered = text.lower()
    if caller_number and _SAME_NUMBER.search(lowered):
        return caller_number, 0.9
    words = tokens(text)
    digits = "".join(chunk.digits for chunk in number_chunks(words))
    if text.lstrip().startswith("+"):
        digits = "+" + digits
    if len(digits.lstrip("+")) < 10:
        return None, 0.0
    try:
        number = phonenumbers.parse(digits, REGION)
    except phonenumbers.NumberParseException:
        return None, 0.0
    if phonenumbers.is_valid_number(number):
        confidence = 0.95
    elif phonenumbers.is_possible_number(number):
        confidence = 0.5
    else:
        return None, 0.0
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164), confidence


_WRITTEN_EMAIL = re.compile(r"[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)+")
VALID_EMAIL = re.compile(r"^[a-z0-9](?:[a-z0-9._%+-]*[a-z0-9])?@[a-z0-9-]+(?:\.[a-z0-9-]+)+$")
_LEAD_IN = re.compile(
    r"^.*?\b(e-?mail(?: address)? is|email is|reach me at|send it to|it'?s|it is|that'?s)\s+"
)
_SYMBOLS = {
    "at": "@",
    "dot": ".",
    "period": ".",
    "point": ".",
    "underscore": "_",
    "dash": "-",
    "hyphen": "-",
    "minus": "-",
    "plus": "+",
}
# Callers often stop at the provider's name: "jane at gmail".
_COMMON_DOMAINS = {
    "gmail": "gmail.com",
    "yahoo": "yahoo.com",
    "hotmail": "hotmail.com",
    "outlook": "outlook.com",
    "aol": "aol.com",
    "icloud": "icloud.com",
    "comcast": "comcast.net",
    "msn": "msn.com",
    "live": "live.com",
    "protonmail": "protonmail.com",
}
_EMAIL_FILLERS = FILLERS | {"sign", "symbol", "all", "lowercase", "lower", "case"}


def email_address(text: str) -> tuple[str | None, float]:
    """The e-mail address in ``text``, written or spoken, and how sure the parse is."""
    lowered = text.lower()
    if written := _WRITTEN_EMAIL.search(lowered.replace(" @ ", "@")):
        candidate = written.group(0).strip(".")
        return (candidate, 0.95) if VALID_EMAIL.match(candidate) else (None, 0.0)
    spoken = _LEAD_IN.sub("", lowered)
    words = tokens(spoken)
    if "at" not in words:
        return None, 0.0
    at = len(words) - 1 - words[::-1].index("at")  # the last "at" is the one before the domain
    local = _assemble(words[:at])
    domain = _assemble(words[at + 1 :])
    if domain in _COMMON_DOMAINS:
        domain = _COMMON_DOMAINS[domain]
    candidate = f"{local}@{domain}"
    if not local or not VALID_EMAIL.match(candidate):
        return None, 0.0
    return candidate, 0.85 if "." in domain else 0.5


def _assemble(words: list[str]) -> str:
    """Glue spoken e-mail parts: symbols, spelled letters, digits and whole words."""
    # Only runs of bare letters count as spelling here: "you" in an address is a word.
    runs = {run.start: run for run in letter_runs(words) if run.single >= len(run.letters)}
    chunks = {chunk.start: chunk for chunk in number_chunks(words)}
    out: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        run = runs.get(i)
        chunk = chunks.get(i)
        if word in _SYMBOLS:
            out.append(_SYMBOLS[word])
            i += 1
        elif run is not None and (run.end - run.start > 1 or len(word) == 1):
            out.append(run.letters.lower())
            i = run.end
        elif chunk is not None:
            out.append(chunk.digits)
            i = chunk.end
        else:
            if word not in _EMAIL_FILLERS:
                out.append(word)
            i += 1
    return "".join(out)
