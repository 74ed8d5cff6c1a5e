"""User-facing errors: the CLI prints these as one line, without a traceback."""


class UserError(Exception):
    """A mistake in the user's input (value, file, option). The message says what and how to fix it."""
