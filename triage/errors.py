"""Exceptions of the core package.

Every error raised on purpose by :mod:`triage` derives from :class:`TriageError`, so a
process boundary (the CLI, the worker) can catch the family in one place. Each class's
docstring is its default message.
"""

from __future__ import annotations


class TriageError(Exception):
    """The triage core could not do what was asked."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class ReadError(TriageError):
    """The file could not be read as a radiograph."""


class NotDicomError(ReadError):
    """The file is not a DICOM file."""


class NoPixelDataError(ReadError):
    """The DICOM object has no pixel data."""


class TruncatedPixelDataError(ReadError):
    """The pixel data is shorter than Rows x Columns x BitsAllocated says."""


class UnsupportedImageError(ReadError):
    """The image is not a single-frame greyscale radiograph."""


class EmptyImageError(ReadError):
    """The image has zero rows or zero columns."""


class PackageError(TriageError):
    """The model package is missing, incomplete or inconsistent."""
