"""User-facing errors: the CLI prints these as one line, without a traceback."""


class UserError(ValueError):
    """A mistake in the user's input (value, file, option). The message says what and how to fix it.

    A ValueError, so callers of the Python API can catch a bad argument the usual way."""
