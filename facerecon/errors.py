"""Errors a user can act on. Each carries a one-line message; the CLI prints it and exits non-zero."""


class FaceReconError(Exception):
    """Base class for every error facerecon reports to a user."""


class InputImageError(FaceReconError):
    """The input is not a readable image, or is outside the documented limits."""


class NoFaceError(FaceReconError):
    """No face (large enough) was found in an image."""


class AssetError(FaceReconError):
    """A data asset (the ICT-FaceKit model) is missing or malformed."""


class FitError(FaceReconError, ValueError):
    """The model could not be fitted to a face's landmarks (degenerate or non-finite points).
    Also a ValueError, which the fitter raised before this class existed."""
