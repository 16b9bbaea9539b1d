"""Errors that reach the user as one clear message instead of a traceback."""


class AlignPipeError(Exception):
    """An error caused by the user's input (config, paths, URLs), not by a bug.

    The CLI prints its message on one line and exits with status 2; every other
    exception is a bug and keeps its traceback.
    """


class ConfigError(AlignPipeError):
    """A configuration key or value is unknown or out of range."""


class InputError(AlignPipeError):
    """An input path, URL or file is missing, unreachable or malformed."""
