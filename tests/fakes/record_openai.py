"""List the scenario lines the OpenAI fake has no recording for, and check every recording.

How the recordings of the scenarios were made
---------------------------------------------

``tests/intake/conversation/test_scenarios_openai.py`` plays every ``intake/scenarios/*.toml``
through :class:`~intake.understanding.llm.OpenAIEngine` against the loopback fake
(:mod:`tests.fakes.openai_server`), which answers from ``openai_recordings.json``: schema name
-> exact caller text -> the model's JSON answer. The schema name depends on the question the
conversation is asking when the line arrives (``intake_<expectation>``, or
``intake_yes_no_<confirming>`` for a read-back), so the list of what to record comes from
playing the calls, not from reading the files:

1. ``python -m tests.fakes.record_openai`` plays every scenario on a throwaway test database
   with the real engine and the real client against the fake. Whenever a request reaches the
   fake with no recording, the turn is understood by the rules instead (so the call follows
   the path the scenario was written for) and the request is listed on stdout as JSON:
   schema name, caller text, the question asked, what was read back or offered, an empty
   answer in the schema's exact shape, and what the rules heard, as a hint only.
2. Each answer was then written by hand as a well-behaved model would fill that strict schema
   for that caller line and that question: every property present, ``null`` / ``false`` /
   ``[]`` for what was not said, values as the caller said them (a reason "in their words,
   short", a carrier or provider as named), never a value the caller did not say. Relative
   days ("next monday") are recorded as weekdays, not as calendar dates, because a recording
   is keyed by the text alone and has to hold whatever day the test runs on.
3. ``python -m tests.fakes.record_openai --check`` validates every recording in the file
   against the strict schema the engine sends under that name (the test suite does the same),
   and a second run of step 1 must list nothing missing. Step 1 also reports, on stderr,
   recorded answers the engine's post-validation rejected or that differ from the rules'
   reading: read those by eye; a difference is not necessarily wrong.

No real API was called: the scenarios' callers are made up, and so are their answers.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging
import os
import sys
from dataclasses import dataclass, field
from typing import Any

from intake.understanding.schemas import response_format, schema_name
from intake.understanding.types import Context, Expectation, Understanding
from tests.fakes.openai_server import FakeOpenAI, empty_answer, load_recordings

JsonSchema = dict[str, Any]


# --- the schemas the engine can send, and a strict check of an answer against one -----------


def known_schemas() -> dict[str, JsonSchema]:
    """Every schema the engine can send, by name: one per expectation, one per read-back."""
    today = dt.date(2025, 3, 3)  # the schemas do not depend on the day
    contexts = [(expect, Context(today=today)) for expect in Expectation]
    contexts += [
        (Expectation.YES_NO, Context(today=today, confirming=confirming))
        for confirming in Expectation
        if confirming is not Expectation.YES_NO
    ]
    schemas: dict[str, JsonSchema] = {}
    for expect, context in contexts:
        json_schema = response_format(expect, context)["json_schema"]
        schemas[json_schema["name"]] = dict(json_schema.get("schema") or {})
    return schemas


_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
    "array": (list,),
    "object": (dict,),
}


def _is_type(value: Any, kind: str) -> bool:
    if isinstance(value, bool) and kind in ("integer", "number"):
        return False
    return isinstance(value, _JSON_TYPES[kind])


def schema_errors(schema: JsonSchema, value: Any, where: str = "$") -> list[str]:
    """How ``value`` breaks ``schema``, for the subset of JSON Schema strict mode allows."""
    if "anyOf" in schema:
        if any(not schema_errors(option, value, where) for option in schema["anyOf"]):
            return []
        return [f"{where}: matches none of anyOf"]
    errors: list[str] = []
    kinds = schema.get("type")
    if kinds is not None:
        kinds = kinds if isinstance(kinds, list) else [kinds]
        if not any(_is_type(value, kind) for kind in kinds):
            return [f"{where}: {type(value).__name__} is not {'/'.join(kinds)}"]
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{where}: {value!r} is not one of {schema['enum']}")
    if isinstance(value, dict) and "properties" in schema:
        properties: dict[str, JsonSchema] = schema["properties"]
        missing = set(schema.get("required", ())) - set(value)
        extra = set(value) - set(properties)
        errors += [f"{where}.{name}: required, missing" for name in sorted(missing)]
        if schema.get("additionalProperties") is False:
            errors += [f"{where}.{name}: not in the schema" for name in sorted(extra)]
        for name, item in value.items():
            if name in properties:
                errors += schema_errors(properties[name], item, f"{where}.{name}")
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            errors += schema_errors(schema["items"], item, f"{where}[{index}]")
    return errors


def recording_errors(recordings: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """Every recording that is not a valid answer under the schema of its name."""
    schemas = known_schemas()
    errors: list[str] = []
    for name, answers in sorted(recordings.items()):
        if name not in schemas:
            errors.append(f"{name}: no such schema")
            continue
        for text, answer in answers.items():
            errors += [f"{name} {text!r}: {e}" for e in schema_errors(schemas[name], answer)]
    return errors


# --- playing the scenarios to find what is missing ------------------------------------------


@dataclass
class Probe:
    """Understands through the OpenAI engine; where the fake has no recording, by the rules.

    Falling back on a missing recording keeps each call on the path its scenario was written
    for, so one run lists every line that needs a recording.
    """

    fake: FakeOpenAI
    engine: Any  # OpenAIEngine; imported once Django is set up
    rules: Any  # RulesEngine
    scenario: str = ""
    missing: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    name: str = "probe"

    async def understand(self, text: str, expect: Expectation, context: Context) -> Understanding:
        understood: Understanding = await self.engine.understand(text, expect, context)
        if not text.strip():
            return understood
        name = schema_name(expect, context)
        rules: Understanding = self.rules.parse(text, expect, context)
        recorded = self.fake.recordings.get(name, {}).get(text)
        if recorded is None:
            self.missing.append(
                {
                    "scenario": self.scenario,
                    "schema": name,
                    "text": text,
                    "question": context.last_question,
                    "read_back": context.read_back,
                    "offered": context.offered_labels,
                    "answer": empty_answer(self.fake.requests[-1].schema),
                    "rules_heard": {"intent": str(rules.intent), **rules.fields()},
                }
            )
            return rules
        if understood.engine != "openai":
            self.notes.append(f"{self.scenario}: {name} {text!r} fell back ({understood.engine})")
        elif understood.confidence < 0.5 and any(
            value not in (None, False, []) for key, value in recorded.items() if key != "intent"
        ):
            self.notes.append(f"{self.scenario}: {name} {text!r}: validation rejected a value")
        elif (understood.intent, understood.fields()) != (rules.intent, rules.fields()):
            self.notes.append(
                f"{self.scenario}: {name} {text!r}: model {understood.intent} "
                f"{understood.fields()} / rules {rules.intent} {rules.fields()}"
            )
        return understood


async def _probe_all() -> Probe:
    from asgiref.sync import sync_to_async
    from django.core.management import call_command
    from django.test import override_settings

    from clinic.demo import load_demo_calendar
    from clinic.services import slots_generate
    from intake import scenario as scenarios
    from intake.understanding.llm import OpenAIEngine
    from intake.understanding.rules import RulesEngine
    from tests.intake.conversation.runner import play
    from tests.intake.conversation.test_scenarios import settings_for

    def fresh_clinic() -> None:
        call_command("flush", interactive=False, verbosity=0)
        load_demo_calendar()
        slots_generate(horizon_days=30)

    async with FakeOpenAI() as fake:
        engine = OpenAIEngine(
            api_key="test-key", model="gpt-4o-mini", base_url=fake.base_url, timeout=2.0
        )
        probe = Probe(fake, engine, RulesEngine())
        try:
            for scenario in scenarios.all_scenarios():
                probe.scenario = scenario.slug
                await sync_to_async(fresh_clinic)()
                with override_settings(**settings_for(scenario)):
                    played = await play(scenario, probe)
                if played.problems:
                    probe.notes.append(f"{scenario.slug}: {played.problems}")
        finally:
            await engine.aclose()
    return probe


def _probe_on_a_test_database() -> Probe:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clinic.settings")
    import django

    django.setup()
    from django.db import connection
    from django.test.utils import setup_test_environment, teardown_test_environment

    setup_test_environment()
    logging.disable(logging.INFO)  # the calls' own logs would bury the list
    old_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    try:
        return asyncio.run(_probe_all())
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
        teardown_test_environment()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--check", action="store_true", help="only validate the recordings against the schemas"
    )
    args = parser.parse_args(argv)
    errors = recording_errors(load_recordings())
    for error in errors:
        sys.stderr.write(f"invalid recording: {error}\n")
    if args.check:
        return 1 if errors else 0
    probe = _probe_on_a_test_database()
    for note in probe.notes:
        sys.stderr.write(f"note: {note}\n")
    sys.stdout.write(json.dumps(probe.missing, indent=2, ensure_ascii=False) + "\n")
    sys.stderr.write(f"{len(probe.missing)} caller lines have no recording\n")
    return 1 if errors or probe.missing else 0


__all__ = ["known_schemas", "main", "recording_errors", "schema_errors"]

if __name__ == "__main__":
    sys.exit(main())
