"""Errors that reach the user as one clear message instead of a traceback."""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator

# Beam logs every exception a DoFn raises, with its traceback, before it re-raises it with
# " [while running 'STEP']" added to its message.
BEAM_STEP_LOGGER = "apache_beam.runners.common"
_BEAM_STEP = re.compile(r" \[while running '[^']*'\]")
MAX_MESSAGE_CHARS = 1000


class AlignPipeError(Exception):
    """An error caused by the user's input (config, paths, URLs), not by a bug.

    The CLI prints its message on one line and exits with status 2; every other
    exception is a bug and keeps its traceback.
    """


class ConfigError(AlignPipeError):
    """A configuration key or value is unknown or out of range."""


class InputError(AlignPipeError):
    """An input path, URL or file is missing, unreachable or malformed."""


def user_error_in(error: BaseException | None) -> AlignPipeError | None:
    """The `AlignPipeError` that `error` is, or was raised from or while handling; else None."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, AlignPipeError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def one_line(message: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """`message` as one printable line of at most `limit` characters: whitespace runs become
    one space, other unprintable characters `\\xNN` escapes (a file's bytes may be quoted)."""
    text = " ".join(message.split())
    text = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _UserErrorTracebacks(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and user_error_in(record.exc_info[1]))


@contextlib.contextmanager
def user_errors_from_beam() -> Iterator[None]:
    """Runs a Beam pipeline so that a user error raised in a DoFn reaches the caller as itself.

    Within the block, Beam's log of such an error (and its traceback) is dropped, and the
    error the pipeline raises is re-raised as the `AlignPipeError` it came from, without
    Beam's step suffix: the CLI prints it as one line. Any other failure is a bug and is
    left as it is, traceback and all.
    """
    log_filter = _UserErrorTracebacks()
    logger = logging.getLogger(BEAM_STEP_LOGGER)
    logger.addFilter(log_filter)
    try:
        yield
    except Exception as e:
        error = user_error_in(e)
        if error is None:
            raise
        raise type(error)(_BEAM_STEP.sub("", str(error))) from None
    finally:
        logger.removeFilter(log_filter)
