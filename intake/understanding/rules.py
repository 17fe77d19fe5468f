"""The offline understanding engine: rules, dictionaries and small parsers, no network.

It is the default engine and the fallback of every other one, so it must answer every turn
quickly (a few milliseconds) and never raise. Each expectation has one extractor; on top of
it come the requests a caller can make at any time (a person, a repeat, goodbye, "I don't
know") and corrections ("no, it's Smyth with a y", "actually Thursday").
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import replace

from clinic.logs import get_logger
from intake.understanding import intents
from intake.understanding.address import parse_address
from intake.understanding.contact import email_address, phone_e164
from intake.understanding.dates import parse_birth_date, parse_day
from intake.understanding.matching import match_carrier, match_provider
from intake.understanding.member_id import normalize_member_id
from intake.understanding.names import name_case, parse_name, parse_spelling, place_name
from intake.understanding.slots import choose_slot
from intake.understanding.types import SELF_PAY, Context, Expectation, Intent, Understanding

Extractor = Callable[[str, Context], Understanding]

log = get_logger(__name__)

MAX_REASON_LENGTH = 500
_REASON_LEAD_IN = re.compile(
    r"^\W*((yeah|yes|so|well|um+|uh+|okay|ok|hi|hello|sure)\b\W*)*"
    r"(i'?m calling (because|about|for|to)|i am calling (because|about|for|to)|"
    r"i need (an appointment|to (see|talk to) (someone|somebody|a doctor|the doctor)) "
    r"(for|about|because)|the reason is|it'?s (for|about|because)|because)?\W*",
    re.IGNORECASE,
)
# Expectations whose answer is a value that a caller may correct.
_CORRECTABLE = frozenset(
    {
        Expectation.NAME,
        Expectation.SPELLING,
        Expectation.DATE_OF_BIRTH,
        Expectation.PHONE,
        Expectation.EMAIL,
        Expectation.ADDRESS,
        Expectation.CARRIER,
        Expectation.MEMBER_ID,
        Expectation.PROVIDER,
        Expectation.DAY,
    }
)


def _name_fields(given: str | None, family: str | None, context: Context) -> Understanding:
    """Two names are first and last; a single one goes where the read-back says."""
    if given and family:
        return Understanding(first_name=given, last_name=family)
    single = given or family
    if not single:
        return Understanding()
    first, last = place_name(single, context.read_back)
    return Understanding(first_name=first, last_name=last)


_LETTER_HINT = re.compile(r"\bwith (a|an|two|double) ")


def _name(text: str, context: Context) -> Understanding:
    heard = parse_name(text)
    if heard.first and heard.last:
        fields = Understanding(first_name=heard.first, last_name=heard.last)
    elif context.read_back or heard.spelled:
        fields = _name_fields(heard.first, heard.last, context)
    else:
        fields = Understanding(first_name=heard.first, last_name=heard.last)
    # "Smith with a y" corrects a name that was heard or read back before.
    hinted = heard.spelled is not None and bool(_LETTER_HINT.search(text.lower()))
    return replace(
        fields,
        spelled=heard.spelled,
        confidence=heard.confidence,
        intent=Intent.CORRECTION if hinted else Intent.NONE,
    )


def _spelling(text: str, context: Context) -> Understanding:
    base = context.read_back.split()[-1] if context.read_back else ""
    spelled, confidence = parse_spelling(text, base=base)
    if not spelled:
        return Understanding()
    if _LETTER_HINT.search(text.lower()):
        # "Smith with a y" names the corrected name, not just its letters.
        placed = _name_fields(name_case(spelled), None, context)
        return replace(placed, spelled=spelled, confidence=confidence, intent=Intent.CORRECTION)
    return Understanding(spelled=spelled, confidence=confidence)


def _birth_date(text: str, context: Context) -> Understanding:
    born, confidence = parse_birth_date(text, context.today)
    return Understanding(date=born, confidence=confidence)


def _phone(text: str, context: Context) -> Understanding:
    number, confidence = phone_e164(text, caller_number=context.caller_number)
    return Understanding(phone_e164=number, confidence=confidence)


def _email(text: str, context: Context) -> Understanding:
    address, confidence = email_address(text)
    return Understanding(email=address, confidence=confidence)


def _address(text: str, context: Context) -> Understanding:
    address, confidence = parse_address(text)
    return Understanding(address=address, confidence=confidence)


def _carrier(text: str, context: Context) -> Understanding:
    match = match_carrier(text, context.accepted_carriers)
    if match.carrier is None and (intents.yes_no(text) or len(match.heard or "") < 3):
        return Understanding()  # "yes", "no", "uh": nothing was named
    if match.carrier is not None:
        confidence = 0.95 if match.carrier == SELF_PAY else 0.95 * match.score / 100
    else:
        confidence = 0.5 if match.heard else 0.0
    return Understanding(carrier=match.carrier, carrier_heard=match.heard, confidence=confidence)


def _member_id(text: str, context: Context) -> Understanding:
    member_id, confidence = normalize_member_id(text)
    return Understanding(member_id=member_id, confidence=confidence)


def _reason(text: str, context: Context) -> Understanding:
    reason = _REASON_LEAD_IN.sub("", text.strip()).strip(" .,")[:MAX_REASON_LENGTH]
    if not reason:
        return Understanding()
    reason = reason[0].upper() + reason[1:]
    return Understanding(reason=reason, confidence=0.8 if len(reason.split()) > 1 else 0.6)


def _provider(text: str, context: Context) -> Understanding:
    provider, score = match_provider(text, context.provider_names)
    return Understanding(provider=provider, confidence=0.9 * score / 100)


def _day(text: str, context: Context) -> Understanding:
    day = parse_day(text, context.today)
    if not day.said:
        return Understanding()
    specific = day.date is not None or day.weekdays or day.soonest
    return Understanding(
        weekdays=day.weekdays,
        part_of_day=day.part_of_day,
        soonest=day.soonest,
        date=day.date,
        not_before=day.not_before,
        confidence=0.85 if specific else 0.7,
    )


def _slot_choice(text: str, context: Context) -> Understanding:
    choice = choose_slot(text, context.offered_options, context.today)
    if choice.index is not None:
        return Understanding(
            intent=Intent.AFFIRM, slot_index=choice.index, confidence=choice.confidence
        )
    # No single option fits: keep what they asked for instead, for a new search.
    wanted = _day(text, context)
    intent = Intent.DENY if choice.refused else Intent.AFFIRM if choice.accepted else Intent.NONE
    return replace(wanted, intent=intent, confidence=max(choice.confidence, wanted.confidence))


def _menu(text: str, context: Context) -> Understanding:
    intent = intents.menu_intent(text)
    return Understanding(intent=intent or Intent.NONE, confidence=0.85 if intent else 0.0)


def _patient_status(text: str, context: Context) -> Understanding:
    new = intents.patient_status(text, context.last_question)
    return Understanding(new_patient=new, confidence=0.85 if new is not None else 0.0)


def _free(text: str, context: Context) -> Understanding:
    intent = intents.menu_intent(text)
    return Understanding(intent=intent or Intent.NONE, confidence=0.6 if intent else 0.0)


EXTRACTORS: dict[Expectation, Extractor] = {
    Expectation.NAME: _name,
    Expectation.SPELLING: _spelling,
    Expectation.DATE_OF_BIRTH: _birth_date,
    Expectation.PHONE: _phone,
    Expectation.EMAIL: _email,
    Expectation.ADDRESS: _address,
    Expectation.CARRIER: _carrier,
    Expectation.MEMBER_ID: _member_id,
    Expectation.REASON: _reason,
    Expectation.PROVIDER: _provider,
    Expectation.DAY: _day,
    Expectation.SLOT_CHOICE: _slot_choice,
    Expectation.MENU: _menu,
    Expectation.PATIENT_STATUS: _patient_status,
    Expectation.FREE: _free,
}


class RulesEngine:
    """Understands with rules only: the offline default, and every engine's fallback."""

    name = "rules"

    async def understand(self, text: str, expect: Expectation, context: Context) -> Understanding:
        return self.parse(text, expect, context)

    def parse(self, text: str, expect: Expectation, context: Context) -> Understanding:
        """The synchronous core of :meth:`understand`: a few milliseconds, and never raises.

        The rules are the last resort of every engine, so a bug in an extractor costs the
        caller one reprompt (an empty understanding), not the call; it is logged by class.
        """
        try:
            return self._parse(text, expect, context)
        except Exception as error:  # the fallback of the fallbacks must not fail the turn
            log.error("nlu_rules_error", expectation=expect.value, error=type(error).__name__)
            return Understanding(engine=self.name)

    def _parse(self, text: str, expect: Expectation, context: Context) -> Understanding:
        if not intents.plain(text):
            return Understanding(engine=self.name)
        request = intents.request_intent(text)
        if request in (Intent.AGENT, Intent.REPEAT, Intent.GOODBYE):
            return Understanding(intent=request, confidence=0.95, engine=self.name)
        if request is Intent.DONT_KNOW:
            # "I'm not sure, maybe March third": keep the value, trust it less.
            rest = intents.without_dont_know(text)
            result = self._understand(rest, expect, context) if rest else Understanding()
            if not result.extracted:
                return Understanding(intent=Intent.DONT_KNOW, confidence=0.9, engine=self.name)
            result = replace(result, confidence=result.confidence * 0.6)
        else:
            result = self._understand(text, expect, context)
        return replace(result, engine=self.name, confidence=round(result.confidence, 3))

    def _understand(self, text: str, expect: Expectation, context: Context) -> Understanding:
        target = context.confirming if expect is Expectation.YES_NO else expect
        if target in _CORRECTABLE:
            rest = intents.correction_rest(text)
            if rest is not None:
                corrected = EXTRACTORS[target](rest, context)
                if corrected.extracted:
                    return replace(corrected, intent=Intent.CORRECTION)
        if expect is Expectation.YES_NO:
            return self._yes_no(text, context)
        result = EXTRACTORS[expect](text, context)
        if result.intent is Intent.NONE and not result.extracted:
            answer = intents.yes_no(text)
            if answer is not None:
                return replace(result, intent=answer, confidence=0.8)
        if expect is Expectation.PATIENT_STATUS and result.intent is Intent.NONE:
            answer = intents.yes_no(text)
            return replace(result, intent=answer or Intent.NONE)
        return result

    def _yes_no(self, text: str, context: Context) -> Understanding:
        answer = intents.yes_no(text)
        if answer is not None:
            return Understanding(intent=answer, confidence=0.9)
        if context.confirming in EXTRACTORS:
            # The caller restated the value instead of answering yes or no.
            restated = EXTRACTORS[context.confirming](text, context)
            if restated.extracted:
                return replace(restated, confidence=restated.confidence * 0.7)
        return Understanding(confidence=0.1)

    def warm_up(self) -> None:
        """Load dateparser's and usaddress's data now rather than on a caller's first turn."""
        context = Context(today=dt.date(2000, 1, 1))
        for expect, text in (
            (Expectation.DATE_OF_BIRTH, "july fourth nineteen eighty"),
            (Expectation.DAY, "tomorrow morning"),
            (Expectation.ADDRESS, "12 main street springfield illinois"),
            (Expectation.PHONE, "212 555 0123"),
        ):
            self.parse(text, expect, context)
