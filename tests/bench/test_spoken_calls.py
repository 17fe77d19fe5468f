"""The spoken-call evaluation's own logic: how turns are compared, which server a scenario
needs, and that the server command is the Makefile's."""

from __future__ import annotations

import pytest

from bench.spoken_calls import ALWAYS_OPEN, server_command, server_setup
from bench.spoken_report import Report, canonical, percentile, word_errors
from intake import scenario as scenarios


@pytest.mark.parametrize(
    ("said", "heard"),
    [
        ("march twelfth nineteen eighty four", "March 12, 1984."),
        ("X J 9 8 7 6 5 4", "XJ987654"),
        ("12 Main Street, Boston, MA 02139", "twelve main street boston m a oh two one three nine"),
        ("I have Aetna", "I have Aetna."),
        ("Tuesday at ten thirty", "Tuesday at 10:30"),
        ("Doctor Moreno please, a follow up", "Dr. Moreno, please. A follow-up."),
        ("self pay", "Self-pay."),
    ],
)
def test_the_same_words_written_differently_are_not_misheard(said: str, heard: str) -> None:
    assert canonical(said) == canonical(heard)
    assert word_errors(said, heard)[0] == 0


def test_different_words_are_misheard_and_counted_per_word() -> None:
    assert word_errors("yes please", "bleeding") == (2, 2)
    assert word_errors("Jane Smith", "Jane Smyth") == (1, 2)
    assert word_errors("I have a rash", "") == (4, 4)
    assert word_errors("yes", "Yeah.") == (1, 1)
    assert word_errors("S M Y T H", "S-M-I-T-H")[0] == 1


def test_a_scenario_that_needs_another_server_gets_its_own_group() -> None:
    default = server_setup(scenarios.load("cancel").setup)
    after_hours = server_setup(scenarios.load("person_requested_after_hours").setup)
    fully_booked = server_setup(scenarios.load("no_slots").setup)
    assert default == server_setup(scenarios.load("person_requested").setup)
    assert default["opening_hours"] == ALWAYS_OPEN and not default["own_calendar"]
    assert after_hours["opening_hours"] != ALWAYS_OPEN
    assert fully_booked["own_calendar"]


def test_the_server_command_is_the_makefiles_run_command_on_the_given_port() -> None:
    command = server_command("127.0.0.1", 8123)
    assert "127.0.0.1" in command and "8123" in command
    assert any(part.endswith(("daphne", "manage.py")) for part in command)


def test_the_report_counts_success_misheard_turns_and_latency(
    capsys: pytest.CaptureFixture[str],
) -> None:
    report = Report(["espeak-f2", "piper-joe"])
    turn = {"line": 1, "said": "yes please", "barge_in": False}
    report.add(
        {
            "scenario": "cancel",
            "voice": "espeak-f2",
            "status": "failed",
            "problems": ["outcome is 'emergency', expected 'cancelled'"],
            "turns": [turn | {"heard": "bleeding", "reply_ms": 900}],
        }
    )
    report.add(
        {
            "scenario": "cancel",
            "voice": "piper-joe",
            "status": "ok",
            "problems": [],
            "turns": [turn | {"heard": "Yes, please.", "reply_ms": 700}],
        }
    )
    report.print_summary(["cancel"])
    out = capsys.readouterr().out
    assert "all voices    1/2 (50%); turns misheard 1/2; word error rate 50%" in out
    assert "scenarios right in at least one voice: 1/1" in out
    assert "line  1: 'yes please' -> 'bleeding'" in out
    assert "p50    700  p90    900  over 2 turns" in out
    assert "cancel x espeak-f2: outcome is 'emergency'" in out
    assert percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 0.9) == 9
