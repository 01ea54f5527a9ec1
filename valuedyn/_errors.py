"""The one exception type that reaches a user.

Raise :class:`ValuedynError` for anything the user can fix (bad input, missing file,
wrong schema, impossible configuration). Its message states the rule, what was
received, and the fix, in one line. The command line prints it without a traceback and
exits with status 2.
"""


class ValuedynError(Exception):
    """A user-facing error: one line saying the rule, what was received, and the fix."""
