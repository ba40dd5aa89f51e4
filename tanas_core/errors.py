"""The library's two exceptions that are not bugs.

``TanasError`` is a user error: bad input or a missing prerequisite, with a message that names the problem and the
fix. It is a ``ValueError`` so callers that catch ``ValueError`` keep working; front-ends show it as one line (the CLI's
``error:``, the app's ``st.error``, a job's error text) while any other exception is a bug and keeps its traceback.

``Cancelled`` is the one form a cancel takes: ``RunContext.check()`` raises it between steps. It is not an
``OSError`` (``InterruptedError`` is), so no ``except OSError`` around a file write can mistake it for a disk fault.
"""
from __future__ import annotations


class TanasError(ValueError):
    """Bad input or a missing prerequisite; the message names the problem and how to fix it."""


class Cancelled(Exception):
    """The run was cancelled; everything it had finished is kept in the workspace."""
