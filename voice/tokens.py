"""Short-lived, single-use tokens that tie a media stream to the call it was answered for.

The WebSocket upgrade's Twilio signature is the same for every call (one URL, no body), so on
its own it cannot say which call a stream belongs to, nor stop a recorded upgrade from being
replayed. The answer webhook therefore hands Twilio a token in ``<Parameter name="token">``,
which comes back in the stream's ``start`` message. The token is:

- **signed** with Django's :class:`~django.core.signing.TimestampSigner` under its own salt,
  so it cannot be forged or reused as any other signed value of this site (and
  ``SECRET_KEY_FALLBACKS`` lets the key rotate);
- **short-lived**: Twilio opens the stream within a second or two of our answer, so 30 seconds
  is plenty, and a leaked token soon becomes useless;
- **single-use across processes**: it names a :class:`~voice.models.StreamGrant` row, which one
  conditional UPDATE (``used_at IS NULL`` and the ``start``'s CallSid -> now) claims; on
  PostgreSQL a concurrent second UPDATE re-checks the condition after the first commits and
  claims nothing;
- **one per call**: a call may have been handed several tokens (a replayed answer), but the
  database lets only one of its grants be used, so at most one stream ever attaches to a call.

It carries the CallSid and a random nonce, never the caller's number. Redeeming never raises
on bad input; it returns ``None`` and logs a reason code.
"""

from __future__ import annotations

import datetime
import secrets
from typing import Any

from channels.db import database_sync_to_async
from django.core import signing
from django.db import IntegrityError, transaction
from django.utils import timezone

from clinic.logs import get_logger
from intake.models import Call
from voice.models import StreamGrant

log = get_logger(__name__)

SALT = "voice.tokens.stream"
DEFAULT_MAX_AGE_SECONDS = 30
# A real token is about 130 characters; refuse anything much larger before any parsing.
MAX_TOKEN_CHARS = 512


def stream_token_issue(call: Call) -> str:
    """A new token that lets one media stream attach to ``call``, once, for a short while.

    Each call of this makes a new grant (a webhook fetched again gets a fresh token), but only
    one grant per call can ever be used: see :class:`~voice.models.StreamGrant`.
    """
    grant = StreamGrant.objects.create(
        call=call, call_sid=call.call_sid, nonce=secrets.token_urlsafe(24)
    )
    token = _signer().sign_object({"sid": call.call_sid, "nonce": grant.nonce})
    log.info("stream_token_issued", call_id=call.pk, grant_id=grant.pk)
    return token


def stream_token_redeem(
    token: object,
    *,
    call_sid: str,
    max_age_seconds: float = DEFAULT_MAX_AGE_SECONDS,
) -> Call | None:
    """Attach a stream to the call the token was issued for; ``None`` if it may not attach.

    ``call_sid`` is the CallSid of the stream's ``start`` message; it is required so that no
    caller can forget it. Refused: not a string, not signed by us under this salt, older than
    ``max_age_seconds``, issued for another CallSid, unknown, already redeemed, or another
    stream already attached to the call with another of its tokens.

    The claim is one conditional UPDATE of the grant's own row: unused, and for this CallSid.
    A refusal for any reason leaves the token as it was, so a ``start`` with the wrong CallSid
    cannot burn the real call's token. The partial unique index on used grants turns a second
    attach to the same call into an IntegrityError, caught here in its own savepoint (on
    PostgreSQL the transaction is otherwise aborted).
    """
    payload = _unsign(token, max_age_seconds=max_age_seconds)
    if payload is None:
        return None
    sid, nonce = payload
    if not isinstance(call_sid, str) or call_sid != sid:
        log.warning("stream_token_refused", reason="other_call")
        return None
    try:
        with transaction.atomic():
            # One row, no join: a concurrent UPDATE of the same grant re-evaluates exactly
            # this condition after the first commits, and claims nothing.
            claimed = StreamGrant.objects.filter(
                nonce=nonce, call_sid=sid, used_at__isnull=True
            ).update(used_at=timezone.now())
    except IntegrityError:
        log.warning("stream_token_refused", reason="call_already_attached")
        return None
    grant = StreamGrant.objects.select_related("call").filter(nonce=nonce).first()
    if claimed != 1 or grant is None:
        reason = "unknown_grant" if grant is None or grant.call_sid != sid else "already_used"
        log.warning("stream_token_refused", reason=reason, grant_id=grant.pk if grant else None)
        return None
    log.info("stream_token_redeemed", call_id=grant.call_id, grant_id=grant.pk)
    return grant.call


async def astream_token_redeem(
    token: object,
    *,
    call_sid: str,
    max_age_seconds: float = DEFAULT_MAX_AGE_SECONDS,
) -> Call | None:
    """:func:`stream_token_redeem` for the consumer: runs in a thread with a fresh connection."""
    call: Call | None = await database_sync_to_async(stream_token_redeem)(
        token, call_sid=call_sid, max_age_seconds=max_age_seconds
    )
    return call


def stream_grant_redeemed(call: Call) -> bool:
    """Whether a media stream has already attached to ``call`` with one of its tokens."""
    return StreamGrant.objects.filter(call=call, used_at__isnull=False).exists()


def _signer() -> signing.TimestampSigner:
    return signing.TimestampSigner(salt=SALT)


def _unsign(token: object, *, max_age_seconds: float) -> tuple[str, str] | None:
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
        log.warning("stream_token_refused", reason="malformed")
        return None
    try:
        payload: Any = _signer().unsign_object(token, max_age=max_age_seconds)
    except signing.SignatureExpired:
        log.warning("stream_token_refused", reason="expired")
        return None
    except (signing.BadSignature, ValueError, TypeError):
        log.warning("stream_token_refused", reason="bad_signature")
        return None
    if not isinstance(payload, dict):
        log.warning("stream_token_refused", reason="malformed")
        return None
    sid, nonce = payload.get("sid"), payload.get("nonce")
    if not isinstance(sid, str) or not isinstance(nonce, str) or not sid or not nonce:
        log.warning("stream_token_refused", reason="malformed")
        return None
    return sid, nonce


def stream_grants_purge(*, older_than: datetime.timedelta = datetime.timedelta(days=1)) -> int:
    """Delete grants issued before ``older_than`` ago; a token expires within seconds anyway."""
    deleted, _ = StreamGrant.objects.filter(issued_at__lt=timezone.now() - older_than).delete()
    return deleted
