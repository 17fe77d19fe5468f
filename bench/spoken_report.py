"""The spoken-call evaluation's report: outcome table, misheard turns, success and latency.

Turns are compared after a light normalisation, so that the way a recogniser writes a thing
is not counted against it: lower case, punctuation dropped, numbers as digits in the groups
the caller used (:func:`intake.understanding.spoken.number_chunks`), runs of single letters
and digits joined, capitals of two or three letters read as spelled, hyphenated words as two
and "Dr." as "doctor": "X J 9 8" and
"XJ98" are both ``xj98``, "nineteen eighty four" and "1984" are both ``1984``. A turn is
misheard when any normalised word differs; the word error rate is the edit distance over
the caller's normalised words.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from rapidfuzz.distance import Levenshtein

from intake.understanding.spoken import number_chunks, tokens

_LETTERS_THEN_DIGITS = re.compile(r"(?<=[A-Za-z])(?=\d)")
_CAPITALS = re.compile(r"\b[A-Z]{2,3}\b")
_HYPHEN = re.compile(r"(?<=[A-Za-z])-(?=[A-Za-z]{2})")
_SAME_WORD = {"dr": "doctor", "ok": "okay", "st": "street"}


def canonical(text: str) -> list[str]:
    """``text`` as comparable words (see the module's docstring)."""
    # "XJ987654" and "MA" are letters said one by one, however the recogniser wrote them.
    text = _LETTERS_THEN_DIGITS.sub(" ", text)
    text = _CAPITALS.sub(lambda match: " ".join(match.group()), text)
    text = _HYPHEN.sub(" ", text)  # "follow-up", "self-pay": how it is written, not said
    words = [_SAME_WORD.get(word, word) for word in tokens(text)]
    starts = {chunk.start: chunk for chunk in number_chunks(words)}
    plain: list[str] = []
    index = 0
    while index < len(words):
        chunk = starts.get(index)
        if chunk is not None:
            plain.append(chunk.digits)
            index = chunk.end
        else:
            plain.append(words[index])
            index += 1
    merged: list[tuple[str, bool]] = []
    for word in plain:
        atom = word.isdigit() or len(word) == 1
        if atom and merged and merged[-1][1]:
            merged[-1] = (merged[-1][0] + word, True)
        else:
            merged.append((word, atom))
    return [word for word, _ in merged]


def word_errors(said: str, heard: str) -> tuple[int, int]:
    """(edits, words said) between the normalised texts."""
    reference, hypothesis = canonical(said), canonical(heard)
    return Levenshtein.distance(reference, hypothesis), len(reference)


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest-rank percentile (``share`` in 0..1); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(share * len(ordered)))
    return float(ordered[rank - 1])


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.0f}"


class Report:
    """Collects the calls' records; prints one line per call and the summary at the end."""

    def __init__(self, voices: Sequence[str]) -> None:
        self.voices = list(voices)
        self.records: dict[tuple[str, str], dict[str, Any]] = {}

    def add(self, record: dict[str, Any]) -> None:
        for turn in record.get("turns", []):
            turn["edits"], turn["words"] = word_errors(turn["said"], turn["heard"])
        self.records[(record["scenario"], record["voice"])] = record

    @staticmethod
    def _misheard(record: dict[str, Any]) -> list[dict[str, Any]]:
        return [turn for turn in record.get("turns", []) if turn["edits"]]

    def progress_line(self, record: dict[str, Any]) -> str:
        head = f"  {record['scenario']:<30} {record['voice']:<13} {record['status']:<8}"
        if "turns" not in record:
            return f"{head} {record.get('why', '')}"
        turns = record["turns"]
        replies = [t["reply_ms"] for t in turns if t["reply_ms"] is not None]
        return (
            f"{head} misheard {len(self._misheard(record))}/{len(turns)}  "
            f"reply p50 {_ms(percentile(replies, 0.5))} ms  "
            f"outcome {record['outcome']}  {record['duration_s']} s"
        )

    def print_summary(self, slugs: Sequence[str]) -> None:
        width = max([len(slug) for slug in slugs] + [8])
        print("\n== ended as the scenario says (ok / FAIL / err / skip) ==")
        print(f"{'scenario':<{width}}  " + "  ".join(f"{v:>12}" for v in self.voices))
        marks = {"ok": "ok", "failed": "FAIL", "error": "err", "skipped": "skip"}
        for slug in slugs:
            cells = []
            for voice in self.voices:
                record = self.records.get((slug, voice))
                cells.append(marks[record["status"]] if record else "skip")
            print(f"{slug:<{width}}  " + "  ".join(f"{cell:>12}" for cell in cells))
        self._print_rates(slugs)
        self._print_latency()
        self._print_misheard(slugs)
        self._print_problems(slugs)

    def _played(self, voice: str | None = None) -> list[dict[str, Any]]:
        return [
            record
            for (_, v), record in self.records.items()
            if record["status"] in ("ok", "failed", "error") and voice in (None, v)
        ]

    def _print_rates(self, slugs: Sequence[str]) -> None:
        print("\n== success rate (calls that ended right / calls played) ==")
        for label, voice in [("all voices", None)] + [(v, v) for v in self.voices]:
            played = self._played(voice)
            ok = sum(record["status"] == "ok" for record in played)
            turns = [turn for record in played for turn in record.get("turns", [])]
            edits = sum(turn["edits"] for turn in turns)
            words = sum(turn["words"] for turn in turns)
            misheard = sum(bool(turn["edits"]) for turn in turns)
            rate = f"{100 * ok / len(played):.0f}%" if played else "-"
            wer = f"{100 * edits / words:.0f}%" if words else "-"
            print(
                f"  {label:<13} {ok}/{len(played)} ({rate}); turns misheard {misheard}/"
                f"{len(turns)}; word error rate {wer}"
            )
        right_somewhere = [
            slug
            for slug in slugs
            if any(self.records.get((slug, v), {}).get("status") == "ok" for v in self.voices)
        ]
        print(f"  scenarios right in at least one voice: {len(right_somewhere)}/{len(slugs)}")

    def _print_latency(self) -> None:
        print("\n== end of caller speech to first agent audio (ms) ==")
        for label, voice in [("all voices", None)] + [(v, v) for v in self.voices]:
            replies = [
                turn["reply_ms"]
                for record in self._played(voice)
                for turn in record.get("turns", [])
                if turn["reply_ms"] is not None
            ]
            print(
                f"  {label:<13} p50 {_ms(percentile(replies, 0.5)):>6}  "
                f"p90 {_ms(percentile(replies, 0.9)):>6}  over {len(replies)} turns"
            )

    def _print_misheard(self, slugs: Sequence[str]) -> None:
        print("\n== misheard turns (said -> stored as heard) ==")
        by_call: dict[str, list[str]] = defaultdict(list)
        for slug in slugs:
            for voice in self.voices:
                record = self.records.get((slug, voice))
                for turn in self._misheard(record) if record else []:
                    by_call[f"{slug} x {voice}"].append(
                        f"    line {turn['line']:>2}: {turn['said']!r} -> {turn['heard']!r}"
                    )
        for call, lines in by_call.items():
            print(f"  {call}")
            print("\n".join(lines))
        if not by_call:
            print("  none")

    def _print_problems(self, slugs: Sequence[str]) -> None:
        print("\n== why calls did not end right ==")
        found = False
        for slug in slugs:
            for voice in self.voices:
                record = self.records.get((slug, voice))
                if record is None or record["status"] == "ok":
                    continue
                found = True
                reasons = record.get("problems") or [record.get("why", "")]
                print(f"  {slug} x {voice}: " + "; ".join(reasons[:4]))
        if not found:
            print("  none")
