"""The web app (``facerecon serve``): upload photos, follow the job, view and download the heads.

Only the command line imports this package; the core pipeline never does.
"""
from ..errors import require

for _module in ("fastapi", "uvicorn", "python_multipart"):
    require(_module, "web", "the web app")
from .app import WebSettings, create_app  # noqa: E402

__all__ = ["WebSettings", "create_app"]
