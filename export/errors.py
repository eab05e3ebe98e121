"""Errors raised by :mod:`mind_edge.export`."""

from __future__ import annotations

from mind_edge.errors import MindEdgeError


class ExportError(MindEdgeError):
    """An export cannot be done (wrong model, unsupported option, unreadable run)."""


class ExportValidationError(ExportError):
    """The exported graph disagrees with the PyTorch model; lists every failing check.

    ``failures`` holds one line per failing output or check, ``report`` the full validation
    report (the same dict a passing export saves as ``validation.json``).
    """

    def __init__(self, failures: list[str], report: dict) -> None:
        self.failures = list(failures)
        self.report = report
        n = len(self.failures)
        super().__init__(
            f"export validation failed ({n} failing check{'s' if n != 1 else ''}): "
            + "; ".join(self.failures)
            + ". Nothing was written. If only the float deltas exceed the tolerance, a larger --atol may be justified; "
            "a label/task disagreement or checker failure is a bug — report it with the run directory"
        )
