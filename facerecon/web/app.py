"""The FastAPI app: upload photos, follow the job, download the head; the viewer is served at ``/``.

Uploads are checked before a job is queued (size, pixel count, a full decode: the content decides,
never the file name or content type), so a bad photo is a 4xx answer at once. The decodes run in a
small pool of their own (a 79 MP photo takes about 0.6 GB to decode: twelve at once took the server
past 10 GB), reconstruction in the worker pool; the event loop only ever waits on threads. Limits on
the request itself (size while it streams, time, HEAD) are in :mod:`.guards`.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
import warnings
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, BinaryIO

from fastapi import FastAPI, File, HTTPException, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from PIL import Image
from pydantic import BaseModel

from ..errors import InputImageError
from ..load import MAX_PIXELS, load_image
from ..scan.views import VIDEO_SUFFIXES
from .guards import HeadAsGet, RefuseWhenFull, RequestLimits
from .store import Job, JobStore, Status
from .worker import SCAN_FILES, ReconstructionPool, release_free_memory, user_message

STATIC = Path(__file__).parent / "static"
THREE = STATIC / "vendor" / "three" / "build" / "three.module.min.js"
SWAGGER = STATIC / "vendor" / "swagger-ui"    # /docs, served from here rather than a CDN
log = logging.getLogger("facerecon.web")


@dataclass(frozen=True)
class WebSettings:
    workers: int = 1                    # reconstructions at once; each holds its own models (~0.5 GB)
    texture_size: int = 1024
    max_faces: int | None = 8           # tabs in the viewer; a crowd photo keeps its 8 best faces
    max_upload_bytes: int = 20 * 2**20  # the whole request body
    max_pixels: int = MAX_PIXELS
    max_photos: int = 8                 # photos of one person per upload (each is a view of the head)
    max_pending: int = 32               # queued + running jobs; more is 503 rather than an unbounded queue
    decode_workers: int = 2             # uploads decoded at once (a 79 MP photo needs ~0.6 GB to decode)
    header_timeout_s: float = 10.0      # from connecting to the end of the request head (guards.run_server)
    body_timeout_s: float = 120.0       # for the whole request body (20 MB at 1.4 Mbit/s)
    ttl_s: float = 3600.0               # results are deleted this long after they finish
    cleanup_interval_s: float = 60.0
    temp_root: Path | None = None       # where the store's temp folder goes (default: the system's)
    max_video_frames: int = 900         # a video upload's frames (30 s at 30 fps)
    max_scan_photos: int = 60           # photos of one scan (or one video of it)


class ErrorBody(BaseModel):
    detail: str


class JobErrorView(BaseModel):
    status: int
    message: str


class FaceView(BaseModel):
    index: int
    score: float
    box: list[float]
    pose_deg: dict[str, float]
    files: dict[str, str]   # glb, json, texture, obj (a zip of obj + mtl + png): download URLs


class JobView(BaseModel):
    id: str
    status: Status
    stage: str
    queue_position: int | None
    elapsed_s: float
    photos: list[str]
    notes: list[str]
    error: JobErrorView | None
    faces: list[FaceView]
    links: dict[str, str]   # self; once done: photo and overlay; a video's animation, frames and frames_csv;
                            # a scan's scan_glb, scan_obj (a zip of obj + mtl + png), scan_json, scan_turntable


class UploadRejected(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


DONE_LINKS = {"photo": "photo.jpg", "overlay": "overlay.jpg", "animation": "head.glb", "frames": "frames.json",
              "frames_csv": "frames.csv", **SCAN_FILES}
ERRORS = {400: {"model": ErrorBody, "description": "Not a readable image, or a malformed request"},
          408: {"model": ErrorBody, "description": "The upload did not arrive in time"},
          413: {"model": ErrorBody, "description": "Over the upload size or pixel limit"},
          503: {"model": ErrorBody, "description": "Too many jobs pending; try again later"}}
NOT_FOUND = {404: {"model": ErrorBody, "description": "Unknown (or expired) id, or no such file"}}


def create_app(settings: WebSettings = WebSettings()) -> FastAPI:
    for asset in (THREE, SWAGGER / "swagger-ui-bundle.js"):
        if not asset.is_file():
            raise RuntimeError(f"the web app's vendored {asset.name} is missing ({asset}); run scripts/setup.sh")
    if settings.max_pixels > MAX_PIXELS:
        raise ValueError(f"max_pixels cannot exceed facerecon.load.MAX_PIXELS ({MAX_PIXELS})")

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = JobStore(settings.ttl_s, settings.temp_root)
        pool = ReconstructionPool(store, settings.workers, settings.texture_size, settings.max_faces,
                                  settings.max_video_frames)
        decoder = ThreadPoolExecutor(settings.decode_workers, thread_name_prefix="facerecon-decode")
        app.state.store, app.state.pool, app.state.decoder = store, pool, decoder
        cleaner = asyncio.create_task(_expire_periodically(store, settings.cleanup_interval_s))
        try:
            yield
        finally:
            cleaner.cancel()
            await run_in_threadpool(decoder.shutdown)
            await run_in_threadpool(pool.close)  # waits for the running jobs, drops the queued ones
            store.close()

    app = FastAPI(title="facerecon", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Upload a photo, get a textured metric 3D head (ICT-FaceKit, cm) per face.")
    app.add_middleware(RequestLimits, max_bytes=settings.max_upload_bytes + 64 * 1024,  # + multipart framing
                       body_timeout_s=settings.body_timeout_s)
    app.add_middleware(HeadAsGet)

    def queue_full(app: FastAPI) -> str | None:
        if app.state.store.pending() >= settings.max_pending:
            return f"{settings.max_pending} jobs are pending; try again in a minute"
        return None

    app.add_middleware(RefuseWhenFull, path="/api/reconstructions", full=queue_full)
    app.add_middleware(RefuseWhenFull, path="/api/scans", full=queue_full)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ()) if part not in ("body", "path", "query"))
        return JSONResponse({"detail": f"{where or 'request'}: {first.get('msg', 'invalid')}"}, 400)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        return JSONResponse({"detail": "internal server error"}, 500)

    def check_upload_size(total: int) -> None:
        if total > settings.max_upload_bytes:
            raise HTTPException(413, f"upload is {total / 2**20:.1f} MB, over the "
                                     f"{settings.max_upload_bytes / 2**20:.0f} MB limit")

    async def save_uploads(request: Request, job: Job, saves: list[tuple]) -> None:
        """Each (saver, file, path, name) saved in the decode pool (which bounds the decoders' memory);
        on a rejected or failed upload the job is discarded, so that none stays queued forever."""
        loop = asyncio.get_running_loop()
        try:
            for save, file, upload, name in saves:
                await loop.run_in_executor(request.app.state.decoder, save, file, upload, name, settings.max_pixels)
        except UploadRejected as exc:
            request.app.state.store.discard(job)
            raise HTTPException(exc.status, exc.message) from None
        except BaseException:  # e.g. a full disk
            request.app.state.store.discard(job)
            raise

    @app.post("/api/reconstructions", status_code=202, responses=ERRORS, tags=["reconstructions"],
              summary="Upload a photo, or several photos of one person (one head fitted to all of them)")
    async def create_reconstruction(
        request: Request,
        photos: Annotated[list[UploadFile], File(description="JPEG, PNG, WebP, BMP or TIFF. One photo: every face in it. Several: photos of one person, fused into one head")],
    ) -> JobView:
        store: JobStore = request.app.state.store
        if (full := queue_full(request.app)) is not None:
            raise HTTPException(503, full)
        if len(photos) > settings.max_photos:
            raise HTTPException(400, f"{len(photos)} photos uploaded; at most {settings.max_photos} "
                                     "photos of one person at a time")
        check_upload_size(sum(photo.size or 0 for photo in photos))
        names = [_display_name(photo.filename) for photo in photos]
        job = store.create(names)   # no await since the pending check: the limit cannot be overrun
        uploads = [job.folder / f"upload{k}" for k in range(len(photos))]
        await save_uploads(request, job, [(_save_checked, photo.file, upload, name)
                                          for photo, upload, name in zip(photos, uploads, names)])
        request.app.state.pool.submit(job, uploads)
        return _view(store, job)

    @app.post("/api/videos", status_code=202, responses=ERRORS, tags=["reconstructions"],
              summary="Upload a video clip: its main face tracked, an animated GLB (links.animation)")
    async def create_video(
        request: Request,
        video: Annotated[UploadFile, File(description="MP4, MOV, AVI, WebM, ...: one face, one identity, pose and expression per frame")],
    ) -> JobView:
        store: JobStore = request.app.state.store
        if store.pending() >= settings.max_pending:
            raise HTTPException(503, f"{settings.max_pending} jobs are pending; try again in a minute")
        check_upload_size(video.size or 0)
        name = _display_name(video.filename)
        job = store.create([name])
        # imageio picks its reader by the suffix; ffmpeg then probes the content, whatever the container.
        upload = job.folder / "upload0.mp4"
        try:
            await run_in_threadpool(_save_checked_video, video.file, upload, name, settings.max_pixels)
        except UploadRejected as exc:
            store.discard(job)
            raise HTTPException(exc.status, exc.message) from None
        except BaseException:
            store.discard(job)
            raise
        request.app.state.pool.submit_video(job, upload)
        return _view(store, job)

    @app.post("/api/scans", status_code=202, responses=ERRORS, tags=["reconstructions"],
              summary="Upload a video or photos walking round a still object or animal: its textured mesh (facerecon scan)")
    async def create_scan(
        request: Request,
        files: Annotated[list[UploadFile], File(description="One video (MP4, MOV, ...) or at least 3 photos of the subject from different sides")],
    ) -> JobView:
        store: JobStore = request.app.state.store
        if (full := queue_full(request.app)) is not None:
            raise HTTPException(503, full)
        if len(files) > settings.max_scan_photos:
            raise HTTPException(400, f"{len(files)} files uploaded; a scan takes one video or at most "
                                     f"{settings.max_scan_photos} photos")
        check_upload_size(sum(f.size or 0 for f in files))
        names = [_display_name(f.filename) for f in files]
        video = len(files) == 1 and Path(names[0]).suffix.lower() in VIDEO_SUFFIXES
        job = store.create(names)
        uploads = [job.folder / "upload0.mp4"] if video else [job.folder / f"upload{k}" for k in range(len(files))]
        save = _save_checked_video if video else _save_checked
        await save_uploads(request, job, [(save, f.file, upload, name) for f, upload, name in zip(files, uploads, names)])
        request.app.state.pool.submit_scan(job, uploads)
        return _view(store, job)

    @app.get("/api/reconstructions/{job_id}", responses=NOT_FOUND, tags=["reconstructions"],
             summary="A job's status (queued, running, done, error), its faces and download links")
    async def get_reconstruction(request: Request, job_id: str) -> JobView:
        store: JobStore = request.app.state.store
        return _view(store, _job(store, job_id))

    @app.get("/api/reconstructions/{job_id}/files/{name}", responses=NOT_FOUND, tags=["reconstructions"],
             response_class=FileResponse, summary="Download one file of a finished job, by the name in its links")
    async def get_file(request: Request, job_id: str, name: str) -> FileResponse:
        job = _job(request.app.state.store, job_id)
        path = job.files.get(name)  # the whitelist: only names the job wrote, never a path built from input
        if path is None:
            raise HTTPException(404, "no such file in this reconstruction")
        media = "model/gltf-binary" if name.endswith(".glb") else None
        return FileResponse(path, media_type=media, filename=name, headers={"X-Content-Type-Options": "nosniff"})

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        vendor = "/static/vendor/swagger-ui"
        return get_swagger_ui_html(openapi_url=app.openapi_url, title="facerecon API",
                                   swagger_js_url=f"{vendor}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{vendor}/swagger-ui.css",
                                   swagger_favicon_url=f"{vendor}/favicon-32x32.png",
                                   swagger_ui_parameters={"validatorUrl": None})  # no validator badge fetched

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


async def _expire_periodically(store: JobStore, interval_s: float) -> None:
    while True:
        await asyncio.sleep(interval_s)
        removed = await run_in_threadpool(store.expire)
        if removed:
            log.info("expired %d reconstructions", removed)


def _job(store: JobStore, job_id: str) -> Job:
    job = store.get(job_id)
    if job is None:
        raise HTTPException(404, "unknown reconstruction id (results expire after a while)")
    return job


def _save_checked(source: BinaryIO, target: Path, name: str, max_pixels: int) -> None:
    """Copy the upload to ``target`` and decode it fully; raise UploadRejected if it is unusable."""
    with open(target, "wb") as out:
        shutil.copyfileobj(source, out)
    _check_pixels(target, name, max_pixels)
    try:
        load_image(target)  # content sniffing: only what decodes is an image
    except InputImageError as exc:
        raise UploadRejected(400, f"{name}: {user_message(exc, target)}") from None
    finally:
        release_free_memory()


def _save_checked_video(source: BinaryIO, target: Path, name: str, max_pixels: int) -> None:
    """Copy the upload to ``target``; raise UploadRejected unless ffmpeg decodes a first frame
    within the pixel limit (the frame count is checked while tracking)."""
    import imageio.v2 as imageio
    with open(target, "wb") as out:
        shutil.copyfileobj(source, out)
    try:
        with imageio.get_reader(target, format="FFMPEG") as reader:
            frame = reader.get_next_data()
    except Exception:  # ffmpeg's many ways to refuse a file
        raise UploadRejected(400, f"{name}: not a readable video") from None
    if frame.shape[0] * frame.shape[1] > max_pixels:
        raise UploadRejected(413, f"{name}: frames are {frame.shape[1]}x{frame.shape[0]} px, over the "
                                  f"{max_pixels / 1e6:g} MP limit")


def _check_pixels(path: Path, name: str, max_pixels: int) -> None:
    """Reject an image over the pixel limit from its header alone, before anything decodes it."""
    too_big = UploadRejected(413, f"{name}: image is over the {max_pixels / 1e6:g} MP limit")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                width, height = img.size
    except Image.DecompressionBombError:
        raise too_big from None
    except (OSError, SyntaxError, ValueError):
        return  # Pillow cannot read its header: load_image will say what is wrong with it
    if width * height > max_pixels:
        raise UploadRejected(413, f"{name}: image is {width}x{height} px, over the {max_pixels / 1e6:g} MP limit")


def _display_name(filename: str | None) -> str:
    """The upload's base name, printable and short: it is shown to the user, never used as a path."""
    name = Path(filename or "").name
    name = "".join(ch for ch in name if ch.isprintable())[:120]
    return name or "photo"


def _view(store: JobStore, job: Job) -> JobView:
    base = f"/api/reconstructions/{job.id}"
    links = {"self": base}
    if job.status is Status.done:   # a photo job's images, a video job's animated head and frames
        links.update({kind: f"{base}/files/{name}" for kind, name in DONE_LINKS.items() if name in job.files})
    faces = [FaceView(**{**face, "files": {kind: f"{base}/files/{name}" for kind, name in face["files"].items()}})
             for face in job.faces]
    end = job.finished if job.finished is not None else time.time()
    return JobView(id=job.id, status=job.status, stage=job.stage,
                   queue_position=store.queue_position(job) if job.status is Status.queued else None,
                   elapsed_s=round(end - job.created, 2), photos=job.photos, notes=job.notes,
                   error=JobErrorView(status=job.error.status, message=job.error.message) if job.error else None,
                   faces=faces, links=links)
