"""The one exception type that means "the user gave us something we cannot use"."""


class UserError(Exception):
    """A problem with the user's input: reported as one line and exit code 2, no traceback."""
