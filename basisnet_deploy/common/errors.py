"""The one exception type the CLI turns into a one-line message and exit code 2."""


class UserError(Exception):
    """A problem with the user's input (files, flags, data), not a bug in basisnet-deploy.

    The message is a full sentence that names the file or option and, where there is one,
    the fix.
    """


class ConfigError(UserError):
    """A config.json / preset value that is invalid: one line naming the key."""
