"""Table-driven: every caller line in corpus.json is understood as the corpus says.

The expected fields are exact: an extraction the corpus does not list (a stray name, a
wrong weekday) fails the case as surely as a missing one.
"""

from __future__ import annotations

import pytest

from intake.understanding import Intent, RulesEngine
from tests.intake.understanding.corpus import Case, load_corpus

_, CASES = load_corpus()
ENGINE = RulesEngine()


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
async def test_the_rules_engine_understands_the_corpus_line(case: Case) -> None:
    understood = await ENGINE.understand(case.text, case.expect, case.context)

    assert (understood.intent, understood.fields()) == (case.intent, case.want)
    assert understood.engine == "rules"
    assert 0.0 <= understood.confidence <= 1.0
    if case.want:
        assert understood.confidence >= 0.5, "an extraction the corpus expects is trusted"
    elif case.intent is Intent.NONE:
        assert understood.confidence <= 0.3, "nothing understood must not look confident"


def test_the_corpus_covers_every_expectation() -> None:
    from intake.understanding import Expectation

    assert {case.expect for case in CASES} == set(Expectation)
