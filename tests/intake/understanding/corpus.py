"""The caller-line corpus (``corpus.json``): shared by the table-driven tests and the bench."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from intake.understanding import Context, Expectation, Intent, OfferedOption

CORPUS = Path(__file__).with_name("corpus.json")


@dataclass(frozen=True)
class Case:
    expect: Expectation
    text: str
    intent: Intent
    want: dict[str, Any]
    context: Context

    @property
    def id(self) -> str:
        return f"{self.expect.value}:{self.text or '<silence>'}"


def _context(data: dict[str, Any]) -> Context:
    options = [
        OfferedOption(**{**o, "date": dt.date.fromisoformat(o["date"]) if o.get("date") else None})
        for o in data.get("offered_options", [])
    ]
    return Context(
        today=dt.date.fromisoformat(data["today"]),
        time_zone=data.get("time_zone", "America/New_York"),
        accepted_carriers=list(data.get("accepted_carriers", [])),
        provider_names=list(data.get("provider_names", [])),
        offered_options=options,
        caller_number=data.get("caller_number", ""),
    )


def _with_overrides(context: Context, overrides: dict[str, Any]) -> Context:
    changes = dict(overrides)
    if "confirming" in changes:
        changes["confirming"] = Expectation(changes["confirming"])
    return replace(context, **changes)


def load_corpus(path: Path = CORPUS) -> tuple[Context, list[Case]]:
    data = json.loads(path.read_text(encoding="utf-8"))
    default = _context(data["context"])
    cases = [
        Case(
            expect=Expectation(case["expect"]),
            text=case["text"],
            intent=Intent(case.get("intent", "none")),
            want=case.get("want", {}),
            context=_with_overrides(default, case.get("context", {})),
        )
        for case in data["cases"]
    ]
    return default, cases
