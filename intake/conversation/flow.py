"""One step of the conversation: an event and its understanding in, actions out.

Synchronous and database-bound (it runs in Django's database thread). The rules every call
keeps live here, ahead of any question: red flags end intake at once; a person can be asked
for at any time; silence and misunderstanding are bounded; a dropped call leaves staff a
follow-up and keeps everything already said.
"""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.utils import timezone

from clinic.logs import get_logger
from intake import services
from intake.conversation import prompts, red_flags
from intake.conversation.desk import FOLLOWUP, OUTCOME, FrontDesk
from intake.conversation.events import Action, Expect, FollowUpOpened, HangUp, Say, Transfer
from intake.conversation.questions import QUESTIONS, Question
from intake.conversation.state import ConversationState
from intake.conversation.steps import Ask, End, Retry, Step
from intake.models import Call, FollowUp
from intake.understanding.base import hints_for
from intake.understanding.triage import (
    RedFlag,
    Reply,
    confirmation_reply,
    graver,
    needs_confirmation,
)
from intake.understanding.types import Context, Intent, OfferedOption, Understanding

log = get_logger(__name__)

# Below this speech-recognition confidence a turn is treated as noise, not as an answer.
MIN_CONFIDENCE = 0.3


class Flow:
    def __init__(self, call: Call, state: ConversationState) -> None:
        self.call = call
        self.state = state
        self.desk = FrontDesk(call, state)
        self.actions: list[Action] = []

    # --- what an engine may know ----------------------------------------------------------

    @property
    def question(self) -> Question:
        return QUESTIONS[self.state.question or "menu"]

    def context(self) -> Context:
        question = self.question
        return Context(
            today=timezone.localdate(),
            time_zone=settings.TIME_ZONE,
            accepted_carriers=list(settings.CLINIC_ACCEPTED_CARRIERS),
            provider_names=self.desk.provider_names(),
            offered_options=[
                OfferedOption(
                    label=offer.label,
                    weekday=offer.weekday,
                    hour=offer.hour,
                    minute=offer.minute,
                    provider=offer.provider,
                    date=dt.date.fromisoformat(offer.date),
                )
                for offer in self.state.offers
            ],
            last_question=self.state.last_prompt,
            confirming=question.confirming,
            read_back=question.read_back(self.desk) if question.read_back else "",
            caller_number=self.call.caller_number,
        )

    # --- events ---------------------------------------------------------------------------

    def start(self) -> list[Action]:
        greeting = prompts.GREETING.format(clinic=settings.CLINIC_NAME)
        self._ask(Ask("menu", preface=greeting))
        return self.actions

    def hear(self, understanding: Understanding, said: str, confidence: float) -> list[Action]:
        if red_flags.confirming(self.state):
            return self.flag_reply(said, confidence)
        if confidence < MIN_CONFIDENCE:
            self._retry(Retry())
        elif understanding.intent == Intent.AGENT:
            self.person_requested()
        elif understanding.intent == Intent.REPEAT:
            self._say(self.state.last_prompt or self.question.prompt(self.desk))
            self._expect()
        elif understanding.intent == Intent.GOODBYE and self.state.question != "anything_else":
            self._caller_left(prompts.GOODBYE)
        else:
            self._apply(self.question.answer(self.desk, understanding, said))
        return self.actions

    def silence(self) -> list[Action]:
        if red_flags.confirming(self.state):  # no answer to "Did you say ...?" counts as yes
            self._end(red_flags.emergency(red_flags.pending(self.state), "no answer"))
            return self.actions
        self.state.silences += 1
        if self.state.silences > settings.REPROMPT_LIMIT:
            self._end(
                End(
                    OUTCOME.CALLBACK,
                    prompts.TOO_MANY_SILENCES,
                    FOLLOWUP.CALLBACK_REQUESTED,
                    "The caller stopped responding.",
                )
            )
        else:
            self._say(prompts.STILL_THERE + self.state.last_prompt)
            self._expect()
        return self.actions

    def person_requested(self) -> list[Action]:
        """ "Can I talk to someone?" or 0 on the keypad, at any point of the call.

        Not while a possible red flag is being confirmed: that is not a clear no, so the
        caller gets emergency guidance and staff an urgent follow-up.
        """
        if red_flags.confirming(self.state):
            why = "the caller asked for a person instead of answering"
            self._end(red_flags.emergency(red_flags.pending(self.state), why))
        elif self.desk.front_desk_open():
            self._end(End(OUTCOME.TRANSFERRED, prompts.TRANSFER, transfer=True))
        else:
            self._end(
                End(
                    OUTCOME.CALLBACK,
                    prompts.CLOSED_CALLBACK,
                    FOLLOWUP.CALLBACK_REQUESTED,
                    "Caller asked for a person outside opening hours.",
                )
            )
        return self.actions

    def red_flag(self, flag: RedFlag, confidence: float) -> list[Action]:
        """A red flag was screened in the caller's turn (see :mod:`.red_flags`).

        Clear and confident: intake ends at once. Uncertain: "Did you say ...?". Heard again
        while that is asked: there is no doubt left.
        """
        threshold = settings.RED_FLAG_MIN_CONFIDENCE
        if red_flags.confirming(self.state):
            action = "emergency_heard_again"
            step: Step = red_flags.emergency(
                graver(red_flags.pending(self.state), flag), "heard again when asked"
            )
        elif needs_confirmation(flag, confidence, threshold):
            action, step = "confirm", red_flags.ask(self.desk, flag)
        else:
            action, step = "emergency", red_flags.emergency(flag)
        log.info(
            "red_flag",
            call_id=self.call.pk,
            category=flag.category.value,
            rule=flag.rule,
            evidence=flag.evidence.value,
            confidence=round(confidence, 2),
            action=action,
        )
        self._apply(step)
        return self.actions

    def flag_reply(self, said: str, confidence: float) -> list[Action]:
        """The answer to "Did you say ...?", read by the rules; noise is not a no."""
        reply = confirmation_reply(said) if confidence >= MIN_CONFIDENCE else Reply.UNCLEAR
        self._apply(red_flags.reply(self.desk, reply))
        return self.actions

    def ended(self) -> list[Action]:
        """The line closed. Keep what was said; tell staff if the caller was left mid-way."""
        if self.state.finished:
            return []
        if red_flags.confirming(self.state):  # staff must find out whether it was real
            flag = red_flags.pending(self.state)
            why = "the caller hung up when asked to confirm it"
            followup = self.desk.follow_up(
                FOLLOWUP.EMERGENCY, red_flags.summary(flag, why), FollowUp.Priority.URGENT
            )
            self.actions.append(FollowUpOpened(followup.pk, followup.reason))
            self.desk.release_hold()
            self.desk.finish(self.state.completed_goal or OUTCOME.ABANDONED)
            return []
        self._caller_left(say=None)
        return []

    # --- steps ----------------------------------------------------------------------------

    def _apply(self, step: Step) -> None:
        if isinstance(step, Ask):
            self._ask(step)
        elif isinstance(step, Retry):
            self._retry(step)
        else:
            self._end(step)

    def _ask(self, step: Ask) -> None:
        if step.question != self.state.question:
            self.state.misunderstood = 0
            self.state.silences = 0
        self.state.question = step.question
        self.call.phase = self.question.phase
        prompt = self.question.prompt(self.desk)
        self.state.last_prompt = prompt  # "repeat that" repeats the question, not the preface
        self._say(f"{step.preface} {prompt}".strip())
        self._expect()

    def _retry(self, step: Retry) -> None:
        self.state.misunderstood += 1
        if self.state.misunderstood > settings.REPROMPT_LIMIT:
            self._end(
                End(
                    OUTCOME.CALLBACK,
                    prompts.TOO_MANY_MISSES,
                    FOLLOWUP.CALLBACK_REQUESTED,
                    f"The agent could not understand the caller ({self.question.phase}).",
                )
            )
            return
        prompt = step.hint or self.question.prompt(self.desk)
        self._say(prompts.DIDNT_CATCH + prompt)
        self._expect()

    def _end(self, step: End) -> None:
        self.desk.release_hold()
        if step.followup_reason:
            followup = self.desk.follow_up(
                step.followup_reason, step.followup_summary, step.priority
            )
            self.actions.append(FollowUpOpened(followup.pk, followup.reason))
        self._say(step.say)
        self.actions.append(Transfer() if step.transfer else HangUp())
        self.desk.finish(step.outcome)

    def _caller_left(self, say: str | None) -> None:
        completed = self.state.completed_goal
        self.desk.release_hold()
        if completed is None:
            followup = self.desk.follow_up(
                FOLLOWUP.CALL_DROPPED, f"The call ended during {self.call.phase or 'greeting'}."
            )
            self.actions.append(FollowUpOpened(followup.pk, followup.reason))
        if say:
            self._say(say)
            self.actions.append(HangUp())
        self.desk.finish(completed or OUTCOME.ABANDONED)

    def _say(self, text: str) -> None:
        self.actions.append(Say(text))

    def _expect(self) -> None:
        question = self.question
        self.actions.append(Expect(question.expect, hints_for(question.expect, self.context())))

    def save(self) -> None:
        services.call_update(call=self.call, phase=self.call.phase, state=self.state.to_dict())
