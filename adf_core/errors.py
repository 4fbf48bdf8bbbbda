"""Errors of the engine, each mapped to a distinct process exit code.

The operator reads the exit code (and the run summary) to tell a bad spec from an unreachable
database from bad data, so these codes are part of the contract with the run pod.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    INTERNAL = 1
    USAGE = 2  # click's own code for a bad command line
    INVALID_SPEC = 3
    CONNECTION = 4
    DATA = 5


class AdfError(Exception):
    """Base class: carries a message that is safe to show (it never holds a secret)."""

    exit_code: ExitCode = ExitCode.INTERNAL


class SpecError(AdfError):
    """The DataFlow manifest is malformed or contradicts itself."""

    exit_code = ExitCode.INVALID_SPEC


class ConnectionFailure(AdfError):
    """A database cannot be reached, or a table, column or callable named by the spec is missing."""

    exit_code = ExitCode.CONNECTION


class DataError(AdfError):
    """A row could not be validated, transformed or written."""

    exit_code = ExitCode.DATA

    def __init__(self, message: str, *, row_key: object = None) -> None:
        super().__init__(message)
        self.row_key = row_key
