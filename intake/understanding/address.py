"""Postal addresses, tagged into parts with usaddress.

Spoken numbers are first written as the caller grouped them ("one twenty three" is 123, "six
two seven oh one" is 62701, "forty second" is 42nd) because usaddress was trained on written
addresses. When usaddress finds a label twice (RepeatedLabelError, common when a recogniser
drops the commas) the first occurrence of each label is kept rather than losing the turn.
"""

from __future__ import annotations

import re

import usaddress

from intake.understanding.spoken import number_chunks, tokens
from intake.understanding.types import Address

STATES = {
    "alabama": "AL",
    "alaska": "AK",
    "arizona": "AZ",
    "arkansas": "AR",
    "california": "CA",
    "colorado": "CO",
    "connecticut": "CT",
    "delaware": "DE",
    "district of columbia": "DC",
    "florida": "FL",
    "georgia": "GA",
    "hawaii": "HI",
    "idaho": "ID",
    "illinois": "IL",
    "indiana": "IN",
    "iowa": "IA",
    "kansas": "KS",
    "kentucky": "KY",
    "louisiana": "LA",
    "maine": "ME",
    "maryland": "MD",
    "massachusetts": "MA",
    "michigan": "MI",
    "minnesota": "MN",
    "mississippi": "MS",
    "missouri": "MO",
    "montana": "MT",
    "nebraska": "NE",
    "nevada": "NV",
    "new hampshire": "NH",
    "new jersey": "NJ",
    "new mexico": "NM",
    "new york": "NY",
    "north carolina": "NC",
    "north dakota": "ND",
    "ohio": "OH",
    "oklahoma": "OK",
    "oregon": "OR",
    "pennsylvania": "PA",
    "puerto rico": "PR",
    "rhode island": "RI",
    "south carolina": "SC",
    "south dakota": "SD",
    "tennessee": "TN",
    "texas": "TX",
    "utah": "UT",
    "vermont": "VT",
    "virginia": "VA",
    "washington": "WA",
    "west virginia": "WV",
    "wisconsin": "WI",
    "wyoming": "WY",
}
STATE_CODES = frozenset(STATES.values())

_STREET_LABELS = (
    "AddressNumberPrefix",
    "AddressNumber",
    "AddressNumberSuffix",
    "StreetNamePreDirectional",
    "StreetNamePreModifier",
    "StreetNamePreType",
    "StreetName",
    "StreetNamePostType",
    "StreetNamePostDirectional",
    "USPSBoxType",
    "USPSBoxID",
)
_UNIT_LABELS = (
    "OccupancyType",
    "OccupancyIdentifier",
    "SubaddressType",
    "SubaddressIdentifier",
)
_LEAD_IN = re.compile(
    r"^.*?\b(i live at|address is|i'?m at|i am at|it'?s|it is|that'?s|we live at)\s+"
)
_UNIT_WORDS = r"(apartment|apt|unit|suite|ste|number|no|#|room|floor|building|bldg)"
_UNIT_LETTER = re.compile(rf"\b{_UNIT_WORDS} (\d+) ([a-z])\b(?! [a-z]\b)")
_SUFFIX = {1: "st", 2: "nd", 3: "rd"}


def _ordinal(value: int) -> str:
    suffix = "th" if 10 <= value % 100 <= 20 else _SUFFIX.get(value % 10, "th")
    return f"{value}{suffix}"


def written_form(text: str) -> str:
    """``text`` with spoken numbers written the way an envelope would show them."""
    words = tokens(_LEAD_IN.sub("", text.lower()))
    chunks = {chunk.start: chunk for chunk in number_chunks(words)}
    out: list[str] = []
    i = 0
    while i < len(words):
        chunk = chunks.get(i)
        if chunk is None:
            out.append(words[i])
            i += 1
            continue
        if chunk.ordinal:
            out.append(_ordinal(chunk.value))
            i = chunk.end
            continue
        digits = chunk.digits
        i = chunk.end
        # Adjacent spoken groups are one number: "one twenty three" -> 123, "six two seven" ->
        # 627. Written numerals are already grouped as the writer meant.
        while (
            (following := chunks.get(i)) is not None
            and not following.ordinal
            and not words[chunk.start].isdigit()
            and not words[following.start].isdigit()
        ):
            digits += following.digits
            i = following.end
        out.append(digits)
    return _UNIT_LETTER.sub(lambda m: f"{m.group(1)} {m.group(2)}{m.group(3)}", " ".join(out))


def _tagged(text: str) -> dict[str, str]:
    try:
        tagged, _ = usaddress.tag(text)
        return dict(tagged)
    except usaddress.RepeatedLabelError as error:
        first: dict[str, str] = {}
        previous = ""
        for token, label in error.parsed_string:
            if label == previous:
                first[label] = f"{first[label]} {token}"
            elif label not in first:
                first[label] = token
            previous = label
        return first


def _title(text: str) -> str:
    titled = " ".join(word if word[:1].isdigit() else word.capitalize() for word in text.split())
    return re.sub(r"^P\.?\s?O\.? Box\b", "PO Box", titled, flags=re.IGNORECASE)


def _state(text: str | None) -> str | None:
    if not text:
        return None
    cleaned = text.strip(" .,").lower()
    if cleaned.upper() in STATE_CODES:
        return cleaned.upper()
    return STATES.get(cleaned, _title(cleaned))


def _join(parts: dict[str, str], labels: tuple[str, ...]) -> str:
    return " ".join(parts[label].strip(" ,") for label in labels if parts.get(label))


def parse_address(text: str) -> tuple[Address | None, float]:
    """The address in ``text`` and how sure the parse is (high with a street and a city/ZIP)."""
    written = written_form(text)
    if not written:
        return None, 0.0
    parts = _tagged(written)
    street = _title(_join(parts, _STREET_LABELS)) or None
    unit_type = parts.get("OccupancyType") or parts.get("SubaddressType") or ""
    unit_id = parts.get("OccupancyIdentifier") or parts.get("SubaddressIdentifier") or ""
    unit = " ".join(p for p in (_title(unit_type), unit_id.upper()) if p) or None
    city = _title(parts["PlaceName"].strip(" ,")) if parts.get("PlaceName") else None
    zip_code = re.sub(r"[^\d-]", "", parts.get("ZipCode", "")) or None
    if zip_code and not re.fullmatch(r"\d{5}(-?\d{4})?", zip_code):
        zip_code = None
    address = Address(
        street=street,
        unit=unit,
        city=city,
        state=_state(parts.get("StateName")),
        postal_code=zip_code,
    )
    if not address.as_dict():
        return None, 0.0
    has_number = bool(parts.get("AddressNumber") or parts.get("USPSBoxID"))
    if street and has_number and (city or zip_code):
        return address, 0.85
    if street and has_number:
        return address, 0.6
    return address, 0.35
