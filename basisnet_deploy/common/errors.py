"""The two exception types the CLI turns into one ``Error:`` line.

:class:`UserError` is the user's mistake: one line, exit code 2. Anything else, an
:class:`InternalError` included, is a failure of basisnet-deploy or a library it drives: one
line, exit code 1, and the traceback (with its cause) under ``-v``.
"""


class UserError(Exception):
    """A problem with the user's input (files, flags, data), not a bug in basisnet-deploy.

    The message is a full sentence that names the file or option and, where there is one,
    the fix.
    """


class ConfigError(UserError):
    """A config.json / preset value that is invalid: one line naming the key."""


class InternalError(Exception):
    """A step failed for a reason that is not the user's input (a converter, a runtime).

    Raised ``from`` the original exception so that ``-v`` shows the whole chain.
    """


def first_line(error: BaseException) -> str:
    """The first line of ``error``'s message, or its type's name when it has none: what a
    one-line ``Error:`` or a manifest field quotes of a library's multi-line exception."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
