"""The project's own errors: what the command line reports in one line with exit code 2.

Only these (and their subclasses) are turned into a one-line message; any other exception,
a plain ``KeyError`` or ``ValueError`` included, is a bug and keeps its traceback.

    AttnbenchError          an error the user can fix (bad input, environment, files)
      UsageError            bad input: a flag, a preset, a dtype name (also a ValueError)
        UnknownVariantError a variant name that is not registered (also a KeyError)
    PluginError, ResultsError (their own modules) derive from AttnbenchError too.
"""

from __future__ import annotations


class AttnbenchError(Exception):
    """An error the user can fix; the message names the argument, the expected and the actual."""


class UsageError(AttnbenchError, ValueError):
    """Bad input from the user: a flag, a preset file, a name."""


class UnknownVariantError(UsageError, KeyError):
    """A variant name that is not registered; the message lists the registered ones."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""
