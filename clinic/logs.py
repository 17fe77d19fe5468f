"""One logging pipeline for the whole process: stdlib logging rendered by structlog.

Every record (ours, Django's, Celery's, Daphne's) passes the same processors: context
variables (request id, call id) are merged in, PHI-shaped text is masked, and the line is
rendered as JSON in production or as readable console text in development. Application code
logs through :func:`get_logger` with an event name and ids as keyword arguments.
"""

from __future__ import annotations

from typing import Any

import structlog
from structlog.typing import Processor

from clinic.redaction import redact_event

_configured = False


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.format_exc_info,
        redact_event,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def logging_config(*, level: str, json_lines: bool) -> dict[str, Any]:
    """Return a ``logging.config.dictConfig`` mapping and configure structlog to feed it."""
    configure_structlog()
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if json_lines
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "structured": {
                "()": structlog.stdlib.ProcessorFormatter,
                "processors": [
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    renderer,
                ],
                "foreign_pre_chain": _shared_processors(),
            }
        },
        "handlers": {
            "console": {"class": "logging.StreamHandler", "formatter": "structured"},
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            # Replace Django's own handlers so that every record goes through ours, once.
            "django": {"handlers": [], "level": "INFO", "propagate": True},
            # Django's request logger repeats the path and status we already log.
            "django.server": {"level": "WARNING"},
            "django.db.backends": {"level": "INFO"},
            "daphne": {"level": "WARNING"},
            # faster-whisper logs every utterance's duration and language at INFO; our own
            # stt_utterance line says what matters (lengths and timings, never words).
            "faster_whisper": {"level": "WARNING"},
        },
    }


def configure_structlog() -> None:
    """Route structlog loggers into stdlib logging (idempotent)."""
    global _configured
    if _configured:
        return
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_shared_processors(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    _configured = True


def get_logger(name: str) -> Any:
    """A structured logger; call it as ``log.info("event_name", call_id=..., phase=...)``."""
    return structlog.stdlib.get_logger(name)
