"""How spoken numbers and letters are read: the building blocks every extractor shares."""

from __future__ import annotations

import pytest

from intake.understanding.spoken import letter_runs, number_chunks, tokens


@pytest.mark.parametrize(
    ("text", "groups"),
    [
        ("nineteen eighty four", ["19", "84"]),
        ("twenty oh five", ["20", "05"]),
        ("two thousand and five", ["2005"]),
        ("one hundred twenty three", ["123"]),
        ("double five", ["55"]),
        ("twenty-three", ["23"]),
        ("the twenty first", ["21"]),
        ("555-123-4567", ["555", "123", "4567"]),
        ("3rd of march", ["3"]),
        ("no numbers here", []),
    ],
)
def test_numbers_keep_the_groups_the_caller_said(text: str, groups: list[str]) -> None:
    assert [chunk.digits for chunk in number_chunks(tokens(text))] == groups


def test_ordinals_are_marked_as_ordinals() -> None:
    chunks = number_chunks(tokens("march twenty third, 3rd, three"))

    assert [(c.value, c.ordinal) for c in chunks] == [(23, True), (3, True), (3, False)]


@pytest.mark.parametrize(
    ("text", "letters"),
    [
        ("s m y t h", "SMYTH"),
        ("s-m-y-t-h", "SMYTH"),
        ("es em why tee aitch", "SMYTH"),
        ("sierra mike yankee tango hotel", "SMYTH"),
        ("s as in sam m for mary", "SM"),
        ("m a double t", "MATT"),
        ("o apostrophe n e i l", "O'NEIL"),
    ],
)
def test_spelled_letters_are_read_in_every_common_way(text: str, letters: str) -> None:
    assert [run.letters for run in letter_runs(tokens(text))] == [letters]


def test_words_that_sound_like_letters_are_not_taken_for_bare_spelling() -> None:
    [run] = letter_runs(tokens("are you there"))

    assert run.single == 0, "no letter was said on its own"


def test_a_hyphen_joins_a_name_but_not_spelled_letters() -> None:
    assert tokens("Smith-Jones") == ["smith-jones"]
    assert tokens("S-M-I-T-H") == ["s", "m", "i", "t", "h"]
