"""Errors raised by :mod:`mind_edge.runtime` (torch-free).

Every message says what was asked, what was found and how to fix it, on one line, so the
CLI can print it as a single red line.
"""

from __future__ import annotations

from mind_edge.errors import GraphError, InputError, MindEdgeError

__all__ = ["BundleError", "GraphError", "InputError", "BackendError"]


class BundleError(MindEdgeError):
    """A bundle directory is missing, incomplete, tampered with or of an unknown schema."""


class BackendError(MindEdgeError):
    """An inference backend or execution provider cannot be used."""
