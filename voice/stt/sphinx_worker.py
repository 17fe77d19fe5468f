"""PocketSphinx decoding, run inside a worker process (or thread) of an executor.

Kept free of Django and of our logging so that a freshly spawned worker process imports
nothing but PocketSphinx and NumPy. Each worker keeps one loaded decoder (loading the model
takes about half a second) and the grammar searches it has compiled, and decodes whole
utterances: one call in, one transcript out, no state between calls that a caller of
:func:`decode` has to care about.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import signal
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pocketsphinx import Decoder

SAMPLE_RATE = 16000
LANGUAGE_MODEL_SEARCH = "_default"
"""Name PocketSphinx gives the search of the language model it loads by default."""
MAX_SEARCHES = 32

_DIGIT_WORDS = {
    "0": "zero",
    "1": "one",
    "2": "two",
    "3": "three",
    "4": "four",
    "5": "five",
    "6": "six",
    "7": "seven",
    "8": "eight",
    "9": "nine",
}
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)*")


def grammar_phrases(hints: Sequence[str], lookup: Callable[[str], str | None]) -> list[str]:
    """Each hint as a phrase of dictionary words (lower-cased, digits spelled out).

    Keeping a hint's words together ("that's right", "tuesday morning") constrains the
    search far more than a loop of loose words, which over phone audio inserts short words
    ("i", "the") into silences. A hint with a word missing from the pronunciation dictionary
    (the decoder refuses a grammar that mentions one) contributes its known words singly.
    """
    phrases: list[str] = []

    def add(phrase: str) -> None:
        if phrase and phrase not in phrases:
            phrases.append(phrase)

    for hint in hints:
        words: list[str] = []
        for token in hint.lower().split():
            words += _WORD.findall(_DIGIT_WORDS.get(token, token))
        known = [word for word in words if lookup(word) is not None]
        if known == words:
            add(" ".join(words))
        else:
            for word in known:
                add(word)
    return phrases


def build_jsgf(words: Sequence[str]) -> str:
    """A JSGF grammar accepting any non-empty sequence of the phrases ``words``."""
    if not words:
        raise ValueError("a grammar needs at least one word")
    return (
        "#JSGF V1.0;\n"
        "grammar hints;\n"
        f"<word> = ({' | '.join(words)});\n"
        "public <utterance> = <word>+;\n"
    )


def new_decoder() -> Decoder:
    """A decoder with the bundled US English model, for 16 kHz audio, quiet on stderr."""
    return Decoder(samprate=SAMPLE_RATE, loglevel="FATAL")


@dataclass
class WorkerDecoder:
    """A decoder and the grammar searches already compiled into it."""

    decoder: Decoder
    searches: OrderedDict[str, None] = field(default_factory=OrderedDict)

    def use_hints(self, hints: Sequence[str]) -> str:
        """Activate the search for ``hints`` (compiling it if new); return its name."""
        words = grammar_phrases(hints, self.decoder.lookup_word)
        if not words:
            name = LANGUAGE_MODEL_SEARCH
        else:
            digest = hashlib.sha1(" ".join(words).encode(), usedforsecurity=False)
            name = "hints_" + digest.hexdigest()[:16]
            if name not in self.searches:
                self.decoder.add_jsgf_string(name, build_jsgf(words))
            self.searches[name] = None
            self.searches.move_to_end(name)
        self.decoder.activate_search(name)
        while len(self.searches) > MAX_SEARCHES:
            oldest = next(iter(self.searches))
            if oldest == name:
                break
            # Never remove the active search: PocketSphinx crashes if you do.
            del self.searches[oldest]
            self.decoder.remove_search(oldest)
        return name

    def decode(self, pcm16: bytes, hints: Sequence[str]) -> tuple[str, float, str]:
        search = self.use_hints(hints)
        self.decoder.start_utt()
        self.decoder.process_raw(pcm16, full_utt=True)
        self.decoder.end_utt()
        hypothesis = self.decoder.hyp()
        if hypothesis is None:
            return "", 0.0, search
        # hyp.prob is the utterance posterior in the decoder's log base: turn it into 0..1.
        confidence = min(1.0, max(0.0, float(self.decoder.logmath.exp(hypothesis.prob))))
        return hypothesis.hypstr.strip(), confidence, search


PR_SET_PDEATHSIG = 1
"""prctl(2) option: the signal this process gets when the thread that created it dies."""


def die_with_parent(parent_pid: int) -> None:
    """Worker initializer: be killed when the server dies, even by ``kill -9``.

    Without it a decoding process (and the resource tracker that waits on it) outlived a
    killed server, holding ~200 MB until killed by hand. Linux only; elsewhere a no-op.
    The signal is tied to the *thread* that started the worker: the pool is used from the
    event loop's thread, which lives as long as the server. If the parent is already gone
    when this runs (it died while the worker was starting), exit at once.
    """
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent_pid:
        os._exit(0)


_local = threading.local()


def _worker_decoder() -> WorkerDecoder:
    worker: WorkerDecoder | None = getattr(_local, "decoder", None)
    if worker is None:
        worker = WorkerDecoder(new_decoder())
        _local.decoder = worker
    return worker


def warm() -> int:
    """Load this worker's decoder now; return the worker's process id."""
    _worker_decoder()
    return os.getpid()


def decode(pcm16: bytes, hints: tuple[str, ...]) -> tuple[str, float, str]:
    """Decode one whole utterance (16 kHz, 16-bit mono PCM).

    Returns the text ('' when nothing was recognised), PocketSphinx's posterior probability
    as a confidence, and the name of the search used (a grammar, or the language model).
    """
    return _worker_decoder().decode(pcm16, hints)
