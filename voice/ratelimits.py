"""How many calls the answer webhook accepts per caller and per client address.

A robocaller or a stuck redial loop must not tie up the agent (each answered call costs speech
recognition, synthesis and a database row) nor fill the front desk's follow-up queue. Two
limits, counted with django-ratelimit in the default cache (Redis when ``REDIS_URL`` is set,
so that every Daphne process shares the counters):

- per caller (``From``): :data:`CALLER_RATE`, 5 calls in 10 minutes. A patient who is cut off
  and calls straight back is well inside it. The counter is keyed by the keyed hash of the
  number (:func:`intake.blind_index.phone_index`), so no phone number reaches the cache.
  Callers without a number (withheld or anonymous caller ID) share no per-caller bucket:
  counted together, a handful of them would lock out every patient who hides their number;
  the per-address limit still applies to them.
- per client address: :data:`IP_RATE`, 60 calls a minute, a ceiling for a flood that changes
  the caller ID on every call. The address is django-ratelimit's ``ip`` key: ``REMOTE_ADDR``,
  or what ``RATELIMIT_IP_META_KEY`` names. Behind a load balancer run Daphne with
  ``--proxy-headers`` (or set that setting), otherwise every request shares the proxy's address.

Both are counted only for requests whose Twilio signature is valid (the view checks it first),
so forged requests can neither spend a patient's allowance nor the address's.

A clinic may tune them with the settings ``VOICE_ANSWER_CALLER_RATE`` and
``VOICE_ANSWER_IP_RATE`` (django-ratelimit rate strings such as ``"5/10m"``; empty turns a
limit off). Windows are fixed (django-ratelimit's), so up to twice a rate can pass across a
window boundary; that is fine for a ceiling.

If the cache cannot be reached the call is let through and the failure logged: a patient
reaching the clinic matters more than a flood guard.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest
from django_ratelimit.core import is_ratelimited

from clinic.logs import get_logger
from intake.blind_index import phone_index

log = get_logger(__name__)

CALLER_RATE = "5/10m"
"""Default calls per caller number: 5 in 10 minutes (setting ``VOICE_ANSWER_CALLER_RATE``)."""
IP_RATE = "60/m"
"""Default calls per client address: 60 a minute (setting ``VOICE_ANSWER_IP_RATE``)."""

CALLER = "caller"
IP = "ip"

# Twilio's stand-ins for a withheld caller ID (the words spelled on a keypad: ANONYMOUS,
# RESTRICTED, BLOCKED, UNKNOWN, UNAVAILABLE). They are not one caller.
WITHHELD_CALLER_IDS = frozenset(
    {"+266696687", "+7378742833", "+2562533", "+8656696", "+86282452253"}
)


def caller_rate() -> str:
    """The per-caller rate in force."""
    return str(getattr(settings, "VOICE_ANSWER_CALLER_RATE", CALLER_RATE) or "")


def ip_rate() -> str:
    """The per-address rate in force."""
    return str(getattr(settings, "VOICE_ANSWER_IP_RATE", IP_RATE) or "")


def answer_limit_exceeded(request: HttpRequest, *, caller_number: str) -> str | None:
    """Count this call and return which limit it exceeds (:data:`IP` or :data:`CALLER`).

    ``None`` when the call may be answered. The address is counted first; a call refused for
    its address is not counted against its caller.
    """
    if _exceeded(request, group="voice.answer.ip", key="ip", rate=ip_rate()):
        return IP
    caller_key = "" if caller_number in WITHHELD_CALLER_IDS else phone_index(caller_number)
    if caller_key and _exceeded(
        request,
        group="voice.answer.caller",
        key=lambda _group, _request: caller_key,
        rate=caller_rate(),
    ):
        return CALLER
    return None


def _exceeded(request: HttpRequest, *, group: str, key: object, rate: str) -> bool:
    if not rate:
        return False
    try:
        return bool(is_ratelimited(request, group=group, key=key, rate=rate, increment=True))
    except Exception as exc:  # any cache or configuration failure: fail open, loudly
        log.error("rate_limit_unavailable", group=group, error=type(exc).__name__)
        return False
