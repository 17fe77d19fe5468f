"""The TwiML documents the webhooks answer with, built with twilio's own builders.

Pure functions from values to XML text: no settings, no database, so each document's shape is
tested once and the views only choose which one to send.
"""

from __future__ import annotations

from twilio.twiml.voice_response import VoiceResponse

CONTENT_TYPE = "text/xml; charset=utf-8"
TOKEN_PARAMETER = "token"  # noqa: S105 - the name of a parameter, not a secret
"""The ``<Parameter>`` name the consumer reads the stream token from (``customParameters``)."""

TRANSFER_FAILED_MESSAGE = (
    "I'm sorry, our front desk couldn't take your call just now. "
    "Someone from the clinic will call you back as soon as possible. "
    "Thank you for calling, and goodbye."
)
CLOSED_MESSAGE = (
    "Thank you for calling {clinic}. We can't take your call right now. "
    "If this is a medical emergency, please hang up and dial 9 1 1. "
    "Otherwise, please call back during our opening hours. Goodbye."
)
SAY_LANGUAGE = "en-US"


def answer_with_stream(
    *, stream_url: str, token: str, front_desk_number: str = "", dial_action: str = ""
) -> str:
    """Connect the caller to the agent's media stream, then (optionally) to the front desk.

    ``<Connect><Stream>`` holds the call for as long as the stream is open. When the agent
    closes the stream to hand the caller over, Twilio goes on to the next verb: the
    ``<Dial>`` to the front desk, whose outcome Twilio posts to ``dial_action``. Without a
    front-desk number the call simply ends with the stream.
    """
    response = VoiceResponse()
    connect = response.connect()
    stream = connect.stream(url=stream_url)
    stream.parameter(name=TOKEN_PARAMETER, value=token)
    if front_desk_number:
        _dial(response, front_desk_number=front_desk_number, dial_action=dial_action)
    return _xml(response)


def dial_front_desk(*, front_desk_number: str = "", dial_action: str = "") -> str:
    """Straight to the front desk without the agent; just hang up when there is no number."""
    response = VoiceResponse()
    if front_desk_number:
        _dial(response, front_desk_number=front_desk_number, dial_action=dial_action)
    else:
        response.hangup()
    return _xml(response)


def reject_busy() -> str:
    """Refuse the call with a busy tone: it is not answered, so it is not billed as answered."""
    response = VoiceResponse()
    response.reject(reason="busy")
    return _xml(response)


def say_and_hang_up(message: str = TRANSFER_FAILED_MESSAGE) -> str:
    """Tell the caller something with Twilio's own voice (the stream is gone), then hang up."""
    response = VoiceResponse()
    response.say(message, language=SAY_LANGUAGE)
    response.hangup()
    return _xml(response)


def empty() -> str:
    """``<Response/>``: nothing more to do (Twilio ends the call or ignores the body)."""
    return _xml(VoiceResponse())


def _dial(response: VoiceResponse, *, front_desk_number: str, dial_action: str) -> None:
    if dial_action:
        response.dial(front_desk_number, action=dial_action, method="POST")
    else:
        response.dial(front_desk_number)


def _xml(response: VoiceResponse) -> str:
    return str(response.to_xml())
