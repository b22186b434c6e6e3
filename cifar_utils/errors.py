"""Every error the package raises on purpose, under one base class.

``except CifarUtilsError`` catches what this package means to say (a damaged run folder, a
missing dataset, a bad parameter) and nothing else. Each keeps the builtin base its callers
have always caught (``ValueError`` for a bad value, ``RuntimeError`` for a state), so
``except ValueError`` goes on working. The messages name the file, folder or value at fault.
"""

from __future__ import annotations


class CifarUtilsError(Exception):
    """The base of every error this package raises on purpose."""


class RunError(CifarUtilsError, RuntimeError):
    """A run folder holds something that cannot be trusted or written; the message names the file."""


class RunStorageError(RunError):
    """No space left to save what was being written; nothing finished is lost."""


class RunLockTimeout(RunError):
    """Another process holds a run folder and nothing in it changed for the stated time."""


class CifarDataError(CifarUtilsError, ValueError):
    """A CIFAR-10 source is missing, unreadable or not shaped like CIFAR-10."""


class ParameterError(CifarUtilsError, ValueError):
    """A notebook parameter of the wrong type or out of range; names it and its value."""

    def __init__(self, name: str, value, problem: str):
        self.name, self.value, self.problem = name, value, problem
        super().__init__(f"parameter {name}={value!r}: {problem}")


class ReferenceFolderError(CifarUtilsError, ValueError):
    """A reference folder that mixes settings or cannot be read; the message names it."""


class ReportFolderError(CifarUtilsError, ValueError):
    """A report folder that holds files no report of this project wrote; the message names them."""


class ClusterError(CifarUtilsError, RuntimeError):
    """The cluster cannot be used; the message names the address and what failed."""
