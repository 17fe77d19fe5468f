"""Twilio's REST API, for the one thing a media stream cannot do itself: hang up.

Closing the stream makes Twilio continue with the TwiML after ``<Connect>``, which is the
``<Dial>`` to the front desk. To end a call instead, the session asks Twilio to complete it
first. Without credentials (development, the call simulator) closing the stream is enough.
If the request fails, the caller is put through to the front desk rather than dropped.
"""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.conf import settings
from twilio.base.exceptions import TwilioException
from twilio.rest import Client

from clinic.logs import get_logger

log = get_logger(__name__)


def twilio_client() -> Client:
    client = Client(settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN)
    if settings.TWILIO_API_BASE_URL:
        client.api.base_url = settings.TWILIO_API_BASE_URL
    return client


def end_call_sync(call_sid: str) -> bool:
    """Complete the call at Twilio; True when Twilio accepted it. No database access."""
    if not settings.TWILIO_ACCOUNT_SID:
        return False
    try:
        twilio_client().calls(call_sid).update(status="completed")
    except (TwilioException, OSError) as exc:
        log.error("twilio_hangup_failed", call_sid=call_sid, error=type(exc).__name__)
        return False
    log.info("twilio_hangup", call_sid=call_sid)
    return True


async def end_call(call_sid: str) -> bool:
    # An HTTP request: off the event loop, and off the database thread.
    ended: bool = await sync_to_async(end_call_sync, thread_sensitive=False)(call_sid)
    return ended
