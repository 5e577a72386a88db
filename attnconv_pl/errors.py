"""Errors caused by the user's input (config, paths, data), reported without a traceback."""


class ConfigError(ValueError):
    """Bad input that the user can fix; the message says what was wrong and what to do.

    ``train.py`` and ``probe.py`` print it as one ``error: ...`` line and exit with status 2.
    """
