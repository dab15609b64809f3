"""Structured logging: structlog configured once, loggers bound per actor/subject.

Console rendering on a terminal, one JSON object per line otherwise (CI, files,
log shippers). Field names are the same as in fabric events: ``actor``,
``subject``, ``seq``, ``reason``.

>>> from diaspora.log import configure_logging, get_logger
>>> configure_logging()
>>> log = get_logger(actor="sum", subject="numbers")
>>> log.debug("handled", seq=12)
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import structlog
from structlog.typing import FilteringBoundLogger

__all__ = ["FilteringBoundLogger", "configure_logging", "get_logger"]

_configured = False


class _Stderr:
    """``sys.stderr`` as it is when a line is written, not when logging was configured.

    Test runners (and daemons) replace and close ``sys.stderr``; a logger holding
    the old object would fail on every later line.
    """

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(
    level: int | str | None = None, *, json: bool | None = None, force: bool = False
) -> None:
    """Set up structlog for the process; later calls are no-ops unless ``force``.

    ``level`` defaults to ``$DIASPORA_LOG_LEVEL`` or ``INFO``; ``json`` defaults
    to "stderr is not a terminal".
    """
    global _configured
    if _configured and not force:
        return
    if level is None:
        level = os.environ.get("DIASPORA_LOG_LEVEL", "INFO")
    if isinstance(level, str):
        resolved = logging.getLevelNamesMapping().get(level.upper())
        if resolved is None:
            raise ValueError(f"DIASPORA_LOG_LEVEL: unknown level {level!r}")
        level = resolved
    if json is None:
        json = not sys.stderr.isatty()
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            # the console renderer formats exceptions itself, prettier
            *([structlog.processors.format_exc_info] if json else []),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=_Stderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )
    _configured = True


def get_logger(**bound: Any) -> FilteringBoundLogger:
    """A logger with ``bound`` fields on every line (configures logging on first use)."""
    configure_logging()
    logger: FilteringBoundLogger = structlog.get_logger("diaspora").bind(**bound)
    return logger
