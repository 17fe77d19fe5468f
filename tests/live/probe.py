"""What staff would find in a deployment's database, as one JSON document on stdout.

    python -m tests.live.probe [--phrase "One moment, please." ...]

Run by the live harness with the deployment's environment (like any ``manage.py`` command),
so that the test process reads the same rows staff see in the admin, without sharing a
connection or settings with the servers. Prints ids, outcomes, phases and follow-up reasons
only, never PHI.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import django


def snapshot(phrases: list[str]) -> dict[str, Any]:
    from intake.models import Call, Confirmation, FollowUp, Turn

    calls = []
    for call in Call.objects.order_by("pk"):
        agent_text = " ".join(
            call.turns.filter(speaker=Turn.Speaker.AGENT).values_list("text", flat=True)
        )
        calls.append(
            {
                "id": call.pk,
                "call_sid": call.call_sid,
                "outcome": call.outcome,
                "phase": call.phase,
                "finished": call.finished,
                "duration_seconds": call.duration_seconds,
                "followups": sorted(call.followups.values_list("reason", flat=True)),
                "caller_turns": call.turns.filter(speaker=Turn.Speaker.CALLER).count(),
                "agent_turns": call.turns.filter(speaker=Turn.Speaker.AGENT).count(),
                "agent_phrases": [phrase for phrase in phrases if phrase in agent_text],
            }
        )
    return {
        "calls": calls,
        "followups": FollowUp.objects.count(),
        "confirmations": {
            status: Confirmation.objects.filter(status=status).count()
            for status in Confirmation.Status.values
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--phrase", action="append", default=[], help="a fixed agent prompt")
    options = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clinic.settings")
    django.setup()
    sys.stdout.write(json.dumps(snapshot(options.phrase)) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
