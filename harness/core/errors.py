"""The one exception type that reaches the user as a one-line message."""

from __future__ import annotations


class HarnessError(Exception):
    """A problem with the user's input: the message names the problem and the fix.

    Command-line entry points print ``error: <message>`` on one line and exit with code 2;
    library callers get the exception.
    """
