"""One exception hierarchy for every user-facing failure.

Every message says what was asked, what was found and how to fix it; the CLI prints it
as a single line and exits non-zero.
"""

from __future__ import annotations

import importlib


class MindEdgeError(Exception):
    """Base class of every error mind-edge raises on purpose."""


class ConfigError(MindEdgeError):
    """An option or argument has a value we cannot use."""


class DataError(MindEdgeError):
    """A dataset folder or file is missing or malformed."""


class CheckpointError(MindEdgeError):
    """A run directory or checkpoint is missing, corrupt, truncated or foreign."""


class CapacityError(MindEdgeError):
    """The model has no room left for another task."""


class GraphError(MindEdgeError):
    """Network arrays do not fit the architecture, or an ONNX file is not a mind-edge graph.

    Defined here (not in ``mind_edge.runtime.errors``, which re-exports it) because the
    torch-free bottom layer ``mind_edge.core`` raises it too.
    """


class InputError(MindEdgeError):
    """A batch handed to the runtime or the routing has the wrong shape, dtype or channel count."""


class MissingExtraError(MindEdgeError):
    """An optional dependency is not installed."""

    def __init__(self, package: str, extra: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs the '{package}' package, which is not installed; "
            f"install it with: pip install 'mind-edge[{extra}]'"
        )
        self.package = package
        self.extra = extra


def require(module: str, extra: str, purpose: str):
    """Import an optional module lazily, or raise `MissingExtraError` naming the extra."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingExtraError(module.split(".")[0], extra, purpose) from exc
