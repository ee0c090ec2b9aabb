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


class MissingExtraError(FaceReconError, ImportError):
    """An optional dependency is not installed; the message names the extra that brings it."""


def require(module: str, extra: str, what: str):
    """Import and return ``module``; if it is missing, raise one line naming the pip extra."""
    import importlib
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(f"{what} needs the [{extra}] extra: pip install 'facerecon[{extra}]' "
                                f"({exc.name or module} is not installed)") from None


class ScanInputError(FaceReconError):
    """A scan's views cannot give a surface: too few, blurry, not overlapping, or not registered."""
