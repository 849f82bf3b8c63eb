"""Exceptions a user can act on: the CLI prints them as one line, never a traceback."""


class LmforgeError(Exception):
    """A problem with the user's input or environment; the message says what and how to fix it."""

    exit_code = 1


class ConfigError(LmforgeError):
    """One or more problems in a config file, reported together."""

    exit_code = 2

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))
