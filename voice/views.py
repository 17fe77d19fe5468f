"""Twilio's webhooks: the call is answered, its status reported, its transfer reported.

Each view checks the Twilio signature first (403 and one log line without PHI when it is bad
or missing), then does one thing through the intake services and answers TwiML. The CSRF
check is off for these views because Twilio cannot send a CSRF token; the signature is what
authenticates the request. Log lines carry ids (call id, CallSid) and codes, never ``From``.

What to do with a reported status lives in :func:`call_status_record` and
:func:`dial_status_record`, plain functions that tests call without a request.
"""

from __future__ import annotations

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseForbidden
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from clinic import lifecycle
from clinic.hours import front_desk_open
from clinic.logs import get_logger
from intake import selectors, services
from intake.models import Call, FollowUp
from voice import drain, ratelimits, signatures, tokens, twiml

log = get_logger(__name__)

# Twilio's final CallStatus values and the outcome of a call that was still in progress when
# one arrived (the agent records its own outcome first when the stream ran its course).
FINAL_STATUS_OUTCOMES: dict[str, str] = {
    "completed": Call.Outcome.ABANDONED,
    "busy": Call.Outcome.ABANDONED,
    "no-answer": Call.Outcome.ABANDONED,
    "canceled": Call.Outcome.ABANDONED,
    "failed": Call.Outcome.FAILED,
}
# DialCallStatus values meaning the front desk picked up.
DIAL_CONNECTED = frozenset({"completed", "answered"})
DIAL_STATUSES = DIAL_CONNECTED | {"busy", "no-answer", "failed", "canceled"}


@csrf_exempt
@require_POST
def answer(request: HttpRequest) -> HttpResponse:
    """Incoming call: record it and connect it to the agent's media stream.

    Whatever fails after the signature check, the caller reaches people: without a database
    there is no call row and no stream token, so the answer puts them through to the front desk
    (or tells them the clinic is closed) instead of a 500, which Twilio would turn into its
    "application error" message and a dropped call.
    """
    call_sid = request.POST.get("CallSid", "")
    rejected = _refuse_unsigned(request, call_sid)
    if rejected is not None:
        return rejected
    if not call_sid:
        log.warning("twilio_webhook_invalid", path=request.path, reason="missing_call_sid")
        return HttpResponseBadRequest()
    caller_number = request.POST.get("From", "")
    limit = ratelimits.answer_limit_exceeded(request, caller_number=caller_number)
    if limit is not None:
        log.warning("call_rate_limited", call_sid=call_sid, limit=limit)
        return _twiml(twiml.reject_busy())
    if lifecycle.draining():
        # This process is stopping (voice.drain): no new stream; people take the call.
        drain.call_answered_while_draining(call_sid=call_sid, caller_number=caller_number)
        log.info("call_answered_without_agent", call_sid=call_sid, reason="draining")
        return _twiml(answer_without_agent())
    try:
        return _answer_with_agent(call_sid=call_sid, caller_number=caller_number)
    except DatabaseError as exc:
        log.error(
            "call_answered_without_agent",
            call_sid=signatures.loggable_call_sid(call_sid),
            reason="database_unavailable",
            error=type(exc).__name__,
        )
        return _twiml(answer_without_agent())


def answer_without_agent() -> str:
    """TwiML that reaches people without the agent: the front desk when it is open, otherwise
    Twilio's own voice telling the caller the clinic is closed (and what to do in an emergency).

    Needs neither the database nor the channel layer: it is what callers get when those fail.
    """
    if front_desk_open():
        dial_action = signatures.public_url(reverse("voice:dial-status"))
        return twiml.dial_front_desk(
            front_desk_number=settings.FRONT_DESK_NUMBER, dial_action=dial_action
        )
    return twiml.say_and_hang_up(twiml.CLOSED_MESSAGE.format(clinic=settings.CLINIC_NAME))


def _answer_with_agent(*, call_sid: str, caller_number: str) -> HttpResponse:
    call = services.call_start(call_sid=call_sid, caller_number=caller_number)
    front_desk = settings.FRONT_DESK_NUMBER
    dial_action = signatures.public_url(reverse("voice:dial-status"))
    if call.finished or tokens.stream_grant_redeemed(call):
        # Twilio fetches the answer TwiML again only when our first answer never reached it,
        # and then no stream can have opened; so this is a replay, and a replay gets no new
        # stream token. Should it be Twilio after all, the caller still reaches a person.
        log.warning("call_answer_replayed", call_id=call.pk, call_sid=call_sid)
        return _twiml(twiml.dial_front_desk(front_desk_number=front_desk, dial_action=dial_action))

    token = tokens.stream_token_issue(call)
    log.info("call_answered", call_id=call.pk, call_sid=call_sid, front_desk=bool(front_desk))
    return _twiml(
        twiml.answer_with_stream(
            stream_url=signatures.stream_url(),
            token=token,
            front_desk_number=front_desk,
            dial_action=dial_action,
        )
    )


@csrf_exempt
@require_POST
def status(request: HttpRequest) -> HttpResponse:
    """Twilio's status callback: finish a call the stream did not finish (it never connected,
    or the process running it died). Always 200 for a signed request, or Twilio retries."""
    call_sid = request.POST.get("CallSid", "")
    rejected = _refuse_unsigned(request, call_sid)
    if rejected is not None:
        return rejected
    try:
        call_status_record(call_sid=call_sid, call_status=request.POST.get("CallStatus", ""))
    except DatabaseError as exc:
        # Twilio does not retry status callbacks; the sweep of calls without a live stream
        # (intake services) finishes this call once the database is back.
        log.error(
            "call_status_not_recorded", reason="database_unavailable", error=type(exc).__name__
        )
    return _twiml(twiml.empty())


@csrf_exempt
@require_POST
def dial_status(request: HttpRequest) -> HttpResponse:
    """The ``<Dial action>`` callback: the hand-over to the front desk connected or not."""
    call_sid = request.POST.get("CallSid", "")
    rejected = _refuse_unsigned(request, call_sid)
    if rejected is not None:
        return rejected
    dial_status = request.POST.get("DialCallStatus", "")
    try:
        connected = dial_status_record(call_sid=call_sid, dial_status=dial_status)
    except DatabaseError as exc:
        log.error(
            "dial_status_not_recorded", reason="database_unavailable", error=type(exc).__name__
        )
        connected = dial_status in DIAL_CONNECTED
    # The caller is still on the line when the transfer failed: tell them what happens next.
    return _twiml(twiml.empty() if connected else twiml.say_and_hang_up())


def call_status_record(*, call_sid: str, call_status: str) -> Call | None:
    """Apply a status callback to the call; returns the call, or None when it is unknown.

    A final status finishes a call still in progress: "completed" means the caller hung up
    before the agent was done, so it is abandoned with a "call dropped" follow-up for the
    front desk; "failed" is failed; "busy", "no-answer" and "canceled" are abandoned.
    Idempotent: a call already finished (by the agent, or by an earlier callback) keeps its
    outcome, and the follow-up is opened only by the callback that finished the call.
    Statuses that are not final (ringing, in-progress) change nothing.
    """
    call = selectors.call_find_by_sid(call_sid) if call_sid else None
    if call is None:
        log.warning("call_status_unknown_call", call_sid=call_sid, call_status=call_status)
        return None
    outcome = FINAL_STATUS_OUTCOMES.get(call_status)
    if outcome is None or call.finished:
        log.info("call_status_noted", call_id=call.pk, call_status=call_status, changed=False)
        return call
    ended_at = timezone.now()
    finished = services.call_finish(call=call, outcome=outcome, ended_at=ended_at)
    # call_finish keeps the outcome of a writer that got there first (the stream's session
    # on another process); the end time tells whose finish this was, and only ours opens
    # the follow-up.
    ours = finished.ended_at == ended_at
    if ours and call_status == "completed":
        services.followup_open(
            reason=FollowUp.Reason.CALL_DROPPED,
            call=finished,
            summary="The call ended before the phone agent had finished with the caller.",
        )
    log.info("call_status_noted", call_id=call.pk, call_status=call_status, changed=ours)
    return finished


def dial_status_record(*, call_sid: str, dial_status: str) -> bool:
    """Apply the transfer's outcome to the call; returns whether the front desk picked up.

    Connected: the call is finished as transferred (unless the agent already gave it an
    outcome). Not connected: a high-priority "transfer failed" follow-up, one per call
    however often Twilio repeats the callback, and the call is finished as a callback, since
    the caller is told the front desk will call back.
    """
    connected = dial_status in DIAL_CONNECTED
    status_code = dial_status if dial_status in DIAL_STATUSES else "unknown"
    call = selectors.call_find_by_sid(call_sid) if call_sid else None
    if call is None:
        log.warning("dial_status_unknown_call", call_sid=call_sid, dial_status=status_code)
        return connected
    if connected:
        services.call_finish(call=call, outcome=Call.Outcome.TRANSFERRED)
    else:
        services.followup_open(
            reason=FollowUp.Reason.TRANSFER_FAILED,
            call=call,
            priority=FollowUp.Priority.HIGH,
            summary=f"The transfer to the front desk did not connect ({status_code}).",
        )
        services.call_finish(call=call, outcome=Call.Outcome.CALLBACK)
    log.info("dial_status_noted", call_id=call.pk, dial_status=status_code, connected=connected)
    return connected


def _refuse_unsigned(request: HttpRequest, call_sid: str) -> HttpResponse | None:
    problem = signatures.http_signature_problem(request)
    if problem is None:
        return None
    log.warning(
        "twilio_signature_rejected",
        path=request.path,
        reason=problem,
        call_sid=signatures.loggable_call_sid(call_sid),
    )
    return HttpResponseForbidden()


def _twiml(document: str) -> HttpResponse:
    return HttpResponse(document, content_type=twiml.CONTENT_TYPE)
