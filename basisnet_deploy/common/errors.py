"""The two exception types the CLI turns into one ``Error:`` line.

:class:`UserError` is the user's mistake: one line, exit code 2 (a subclass may set another:
:class:`StoppedBySignal` 128 + the signal's number, the agreement gate's refusal 1). Anything
else, an :class:`InternalError` included, is a failure of basisnet-deploy or a library it
drives: one line, exit code 1, and the traceback (with its cause) under ``-v``.
"""

import signal


class UserError(Exception):
    """A problem with the user's input (files, flags, data), not a bug in basisnet-deploy.

    The message is a full sentence that names the file or option and, where there is one,
    the fix.
    """


class StoppedBySignal(UserError):
    """A run that SIGINT or SIGTERM stopped after saving its state (training, weight tuning):
    one line saying where the state is, and exit code 128 + the signal's number (130 for
    SIGINT, 143 for SIGTERM), as a shell reports a process that signal ended; 130 for a stop
    asked for some other way."""

    def __init__(self, message: str, signal_name: str | None = None):
        super().__init__(message)
        try:
            self.exit_code = 128 + signal.Signals[signal_name].value
        except (KeyError, TypeError):  # not a signal's name: a stop asked for another way
            self.exit_code = 128 + signal.SIGINT.value


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
