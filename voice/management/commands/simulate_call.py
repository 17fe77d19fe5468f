"""Phone the running server the way Twilio would, and check the call against its scenario.

    python manage.py simulate_call new_patient_booked
    python manage.py simulate_call path/to/my_call.toml --base-url http://127.0.0.1:8001 --speed 2
    python manage.py simulate_call new_patient_booked --voice piper-joe

Run it with the same settings as the server (same ``.env``, same database): it creates the
scenario's returning patients in that database first, signs requests with the server's
``TWILIO_AUTH_TOKEN`` and ``PUBLIC_BASE_URL``, and reads the call back afterwards. It exits 0
only when :func:`intake.scenario.check` finds nothing wrong, so it can gate a deployment.
"""

from __future__ import annotations

import argparse
import asyncio
import tomllib
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from intake import scenario as scenarios
from voice.simulator import VOICES, SimulatorError, TwilioCaller, check, format_transcript

# Scenario [setup] keys that are the server's settings: the command cannot change them on a
# running server, so it says which environment the expectations assume.
SERVER_SETTINGS = {
    "opening_hours": "CLINIC_OPENING_HOURS",
    "front_desk_number": "FRONT_DESK_NUMBER",
}


def positive(value: str) -> float:
    number = float(value)
    if number <= 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return number


class Command(BaseCommand):
    help = (
        "Play a scenario (a slug in intake/scenarios or a .toml path) as a phone call against "
        "a running server, like Twilio: signed webhook, media stream, marks, DTMF. Prints the "
        "conversation with per-turn latencies; exits 1 when the call does not match the "
        "scenario's expectations."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("scenario", help="scenario slug (e.g. new_patient_booked) or path")
        parser.add_argument(
            "--base-url",
            default="http://127.0.0.1:8000",
            help="where the server listens (default http://127.0.0.1:8000)",
        )
        parser.add_argument(
            "--speed",
            type=positive,
            default=1.0,
            help="play caller audio and agent playback this many times faster (default 1)",
        )
        parser.add_argument(
            "--barge-in",
            action="store_true",
            help="talk over every agent prompt instead of waiting for it to finish",
        )
        parser.add_argument(
            "--voice",
            choices=tuple(VOICES),
            default=None,
            metavar="NAME",
            help="the caller's voice (default: the scenario's caller_voice, else espeak, the "
            "agent's own); "
            + "; ".join(f"{name}: {voice.description}" for name, voice in VOICES.items()),
        )
        parser.add_argument(
            "--reply-timeout",
            type=positive,
            default=30.0,
            help="seconds to wait for the agent to answer a line (default 30)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        scenario = self._load(options["scenario"])
        self.stdout.write(f"Scenario: {scenario.name}")
        for key, variable in SERVER_SETTINGS.items():
            if key in scenario.setup:
                self.stdout.write(
                    self.style.WARNING(
                        f"  expects the server to run with {variable}={scenario.setup[key]!r}"
                    )
                )
        scenario = self._prepare(scenario)
        try:
            result = asyncio.run(
                TwilioCaller.over_network(
                    options["base_url"],
                    scenario,
                    speed=options["speed"],
                    barge_in=options["barge_in"],
                    voice=options["voice"],
                    reply_timeout_s=options["reply_timeout"],
                )
            )
        except SimulatorError as exc:
            raise CommandError(str(exc)) from None
        for line in format_transcript(result):
            self.stdout.write(line)
        problems = check(scenario, result)
        if problems:
            for problem in problems:
                self.stdout.write(self.style.ERROR(f"  - {problem}"))
            raise CommandError(
                f"{len(problems)} problem(s): the call did not go as the scenario says",
                returncode=1,
            )
        self.stdout.write(self.style.SUCCESS("The call went as the scenario says."))

    def _load(self, name: str) -> scenarios.Scenario:
        try:
            return scenarios.load(name)
        except FileNotFoundError:
            raise CommandError(
                f"no scenario {name!r}: give a slug from intake/scenarios/ or a .toml path"
            ) from None
        except (tomllib.TOMLDecodeError, KeyError, TypeError) as exc:
            raise CommandError(f"scenario {name!r} is not valid: {exc}") from None

    def _prepare(self, scenario: scenarios.Scenario) -> scenarios.Scenario:
        fresh = scenarios.with_fresh_caller(scenario)
        if fresh.caller_number != scenario.caller_number:
            self.stdout.write(
                f"  a patient already has {scenario.caller_number}: "
                f"calling from {fresh.caller_number} instead"
            )
        try:
            scenarios.prepare(fresh)
            return fresh
        except (IndexError, AssertionError):
            # prepare() books returning patients' appointments into the demo calendar.
            raise CommandError(
                "the scenario needs open slots in the calendar: run `manage.py seed_demo` first"
            ) from None
