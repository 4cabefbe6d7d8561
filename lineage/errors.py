"""The exception hierarchy: every error lineage raises on purpose.

    LineageError
    ├── InvalidArgumentError        bad user input (a flag, a URI, a manifest field)
    │   └── SuiteMismatchError      observations or signatures from different suites
    ├── UnknownModelError           a model name that is not registered
    ├── AlreadyExistsError          a name that is already registered
    ├── UnsafeModelFormatError      pickles, remote code, files leaving the model dir
    ├── ModelLoadError              a model directory that cannot be loaded
    ├── AccessModeError             asking a backend for more than its access mode allows
    ├── BudgetExceededError         a query budget that would be overrun
    ├── BackendError                a remote suspect that failed (timeout, garbage)
    ├── InsufficientReferencesError too few references for a test
    └── StoreError                  the store or index is inconsistent or unavailable

The gRPC service maps each class to one status code in one table.
"""

from __future__ import annotations

__all__ = [
    "LineageError",
    "InvalidArgumentError",
    "SuiteMismatchError",
    "UnknownModelError",
    "AlreadyExistsError",
    "UnsafeModelFormatError",
    "ModelLoadError",
    "AccessModeError",
    "BudgetExceededError",
    "BackendError",
    "InsufficientReferencesError",
    "StoreError",
]


class LineageError(Exception):
    """Base class. `reason` is a short UPPER_SNAKE code for machines (google.rpc.ErrorInfo)."""

    reason = "LINEAGE_ERROR"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidArgumentError(LineageError):
    reason = "INVALID_ARGUMENT"


class SuiteMismatchError(InvalidArgumentError):
    reason = "SUITE_MISMATCH"


class UnknownModelError(LineageError):
    reason = "UNKNOWN_MODEL"


class AlreadyExistsError(LineageError):
    reason = "ALREADY_EXISTS"


class UnsafeModelFormatError(LineageError):
    reason = "UNSAFE_MODEL_FORMAT"


class ModelLoadError(LineageError):
    reason = "MODEL_LOAD_FAILED"


class AccessModeError(LineageError):
    reason = "ACCESS_MODE"


class BudgetExceededError(LineageError):
    reason = "BUDGET_EXCEEDED"


class BackendError(LineageError):
    reason = "BACKEND_FAILED"


class InsufficientReferencesError(LineageError):
    reason = "INSUFFICIENT_REFERENCES"


class StoreError(LineageError):
    reason = "STORE_ERROR"
