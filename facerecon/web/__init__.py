"""The web app (``facerecon serve``): upload photos, follow the job, view and download the heads.

Only the command line imports this package; the core pipeline never does.
"""
from .app import WebSettings, create_app

__all__ = ["WebSettings", "create_app"]
