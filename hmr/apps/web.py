"""``hmr web``: a local web page over the same pipeline and output writers as ``hmr demo``.

Upload an image or a video (or pick a bundled example), choose the model and the focal length, and get the
overlay, the side view, an interactive 3D viewer of the GLB meshes and the files ``hmr demo`` writes
(docs/outputs.md), made by the same :class:`hmr.apps.demo.Demo`.

Stack (README "Web demo" has the measurements): Starlette + uvicorn, already installed with mlflow, and a
static page with Google's ``<model-viewer>`` (vendored in ``web_page/vendor``).

Safe by default: binds 127.0.0.1 and answers only requests addressed to the host it serves (no DNS
rebinding); uploads above ``--max-upload-mb`` are refused while they stream in, images above
``--max-pixels`` from their header (hmr.io.images); a bad file gets the one-line message ``hmr demo`` would
print, never a traceback. The pipeline runs in one worker process fed by a bounded queue: a request beyond
``--queue`` waiting ones is answered "busy, retry"; one running longer than ``--timeout`` has its worker
killed (a fresh one takes the next request). Each request's files live in a temporary folder of its own:
the upload is removed once processed, the outputs ``--keep`` seconds after they were made, everything at
shutdown.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import ipaddress
import json
import os
import queue
import re
import secrets
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from hmr.apps.errors import error_line, warn
from hmr.io.images import IMAGE_EXTS, MAX_PIXELS
from hmr.io.video import VIDEO_EXTS

PAGE_DIR = Path(__file__).with_name("web_page")
FITTING = "fitting"  # the model choice that fits the body model to the landmarks (no network)
MESH_FORMATS = ("glb", "obj", "ply")  # per-person meshes the page offers (the GLB is shown in 3D)
MEDIA_TYPES = {
    ".png": "image/png", ".glb": "model/gltf-binary", ".obj": "model/obj", ".ply": "application/octet-stream",
    ".json": "application/json", ".npz": "application/octet-stream", ".mp4": "video/mp4",
}  # fmt: skip


@dataclasses.dataclass
class Limits:
    """What one request may ask of the server (``hmr web --help``)."""

    max_upload_bytes: int = 50 * 2**20
    max_pixels: int = MAX_PIXELS  # images and video frames, checked from the header (0: no limit)
    timeout: float = 300.0  # seconds one request may run in the pipeline
    queue: int = 4  # requests waiting behind the running one; more get "busy, retry"
    keep: float = 1800.0  # seconds the outputs stay downloadable after they were made
    max_frames: int = 300  # videos: frames processed, the rest ignored
    startup_timeout: float = 900.0  # seconds a worker process may take to load the models


class Busy(Exception):
    """The queue is full."""


# ------------------------------------------------------------------------------------ worker process
class FocalPipeline:
    """A :class:`hmr.pipeline.Pipeline` seen with another focal length (pixels), without loading its models
    again: calls get that camera, everything else is the pipeline's."""

    def __init__(self, pipeline, focal: float):
        self._pipeline = pipeline
        self._focal = focal

    def __getattr__(self, name):
        return getattr(self._pipeline, name)

    def camera(self, width: int, height: int):
        from hmr.pipeline.image import make_camera

        return make_camera(width, height, self._focal)

    def __call__(self, image, boxes=None, **kwargs):
        if kwargs.get("camera") is None:
            kwargs["camera"] = self.camera(image.shape[1], image.shape[0])
        return self._pipeline(image, boxes, **kwargs)


class DemoRunner:
    """In the worker process: the pipelines (one per model choice, loaded once) and one job at a time through
    ``hmr demo``'s :class:`Demo`, which writes the outputs."""

    def __init__(self, configs: dict):
        from hmr.pipeline.api import get_pipeline

        self.pipelines = {name: get_pipeline(cfg) for name, cfg in configs.items()}

    def __call__(self, job: dict, progress: Callable[[int, int | None], None]) -> None:
        from hmr.apps.demo import Demo
        from hmr.apps.outputs import file_sha256
        from hmr.io.video import is_video, read_video
        from hmr.pipeline.config import OutputsSection

        pipeline = self.pipelines[job["model"]]
        if job["focal"] is not None:
            pipeline = FocalPipeline(pipeline, job["focal"])
        outputs = OutputsSection(formats=MESH_FORMATS, pictures=True, overwrite=True, max_pixels=job["max_pixels"])
        demo = Demo(pipeline, job["out"], outputs)
        os.chdir(job["in"])  # the records and messages then name the upload as the user called it
        path = Path(job["name"])
        if not is_video(path):
            demo.image(path, job["stem"])
            return
        frames, fps = read_video(path, job["max_pixels"])
        total = min(frames.declared or job["max_frames"], job["max_frames"])
        count = iter(range(1, 1 << 62))
        demo.stream(frames, fps, job["stem"], job["name"], max_frames=job["max_frames"], digest=file_sha256(path),
                    on_frame=lambda picture, fps: progress(next(count), total))  # fmt: skip


def worker_main(conn, setup: Callable, setup_args: tuple) -> None:
    """The worker process: ``setup(*setup_args)`` makes a ``run(job, progress)`` callable, then jobs come in
    through ``conn`` one at a time (None: stop). Messages back: ("ready",) or ("fatal", line) once, then
    per job ("progress", id, done, total)... and ("done", id) or ("error", id, line)."""
    try:
        run = setup(*setup_args)
    except BaseException as err:  # noqa: B036 - reported to the server, which exits with it
        conn.send(("fatal", error_line(err)))
        return
    conn.send(("ready",))
    home = os.getcwd()
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError, KeyboardInterrupt):  # the server is gone
            return
        if job is None:
            return
        try:
            run(job, lambda done, total, i=job["id"]: conn.send(("progress", i, done, total)))
            conn.send(("done", job["id"]))
        except Exception as err:
            conn.send(("error", job["id"], error_line(err)))
        finally:
            os.chdir(home)


# -------------------------------------------------------------------------------------- the service
@dataclasses.dataclass
class Job:
    id: str
    dir: Path
    name: str  # the upload's file name (sanitised)
    model: str
    focal: float | None
    kind: str = "image"  # or video
    status: str = "queued"  # queued, running, done, error
    message: str = ""
    progress: tuple | None = None  # (done, total) frames of a video
    record: dict | None = None  # the <stem>.json Demo wrote
    created: float = dataclasses.field(default_factory=time.monotonic)
    started: float | None = None
    finished: float | None = None

    @property
    def stem(self) -> str:
        return Path(self.name).stem or "upload"

    def files(self) -> dict[str, str]:
        """Downloadable file name -> what it is, from the record (only these are served)."""
        if self.record is None:
            return {}
        out = {name: key for key, name in (self.record.get("files") or {}).items()}
        for p in self.record.get("people") or []:  # video records list tracks, without files
            out.update({name: f"person_{fmt}" for fmt, name in (p.get("files") or {}).items()})
        return out


OWNER_FILE = "owner.pid"


def remove_stale_roots(parent: Path) -> list[Path]:
    """Remove the temporary folders of ``hmr web`` servers that died without cleaning up (e.g. SIGKILL): those
    whose owner process no longer exists. Returns what was removed."""
    removed = []
    for d in parent.glob("hmr-web-*"):
        try:
            pid = int((d / OWNER_FILE).read_text())
            os.kill(pid, 0)  # signal 0: only asks whether the process exists
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
        except (OSError, ValueError):  # no owner file yet, unreadable, or another user's live process
            continue
    return removed


class Service:
    """Jobs, their queue, the worker process and the temporary files; no HTTP (see :func:`create_app`).

    setup, setup_args: what the worker process runs to get its job runner (default :class:`DemoRunner`
    with ``{model name: PipelineConfig}``); a test gives a fake one."""

    def __init__(self, setup: Callable, setup_args: tuple, models: list[str], limits: Limits | None = None,
                 examples: Path | None = None, tmp_dir: str | None = None):  # fmt: skip
        self.setup, self.setup_args = setup, setup_args
        self.models = list(models)
        self.limits = limits or Limits()
        self.examples = examples
        self.root = Path(tempfile.mkdtemp(prefix="hmr-web-", dir=tmp_dir))
        (self.root / OWNER_FILE).write_text(f"{os.getpid()}\n")
        remove_stale_roots(self.root.parent)
        self.jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._queue: queue.Queue[Job] = queue.Queue(maxsize=self.limits.queue)
        self._stop = threading.Event()
        self._proc = self._conn = None
        self._threads: list[threading.Thread] = []

    # ---------------------------------------------------------------------------------- life cycle
    def start(self) -> Service:
        """Start the worker process and wait until its models are loaded (errors raise here, one line)."""
        self._ensure_worker()
        for target in (self._dispatch, self._janitor):
            t = threading.Thread(target=target, name=f"hmr-web{target.__name__}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def close(self) -> None:
        """Stop the worker and the threads, remove every temporary file."""
        self._stop.set()
        for t in self._threads:
            t.join(timeout=5)
        self._stop_worker()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    # ---------------------------------------------------------------------------------------- jobs
    def new_job(self, name: str, model: str | None = None, focal: float | None = None) -> Job:
        """A job folder for an upload called ``name``; the caller writes the file at ``job_input(job)`` and
        calls :meth:`submit` (or :meth:`discard`). ValueError for a bad model or focal length."""
        model = model or self.models[0]
        if model not in self.models:
            raise ValueError(f"unknown model {model!r}; this server has {', '.join(self.models)}")
        if focal is not None and not 0 < focal < 1e6:
            raise ValueError(f"focal length must be a positive number of pixels, got {focal:g}")
        self.check_busy()
        job = Job(secrets.token_urlsafe(12), self.root / secrets.token_hex(8), safe_name(name), model, focal)
        (job.dir / "in").mkdir(parents=True)
        (job.dir / "out").mkdir()
        return job

    def job_input(self, job: Job) -> Path:
        return job.dir / "in" / job.name

    def check_busy(self) -> None:
        if self._queue.full():
            raise Busy(f"busy: {self._queue.qsize()} requests are already waiting; retry in a moment")

    def submit(self, job: Job) -> Job:
        with self._lock:
            try:
                self._queue.put_nowait(job)
            except queue.Full:
                self.discard(job)
                raise Busy(f"busy: {self.limits.queue} requests are already waiting; retry in a moment") from None
            self.jobs[job.id] = job
        return job

    def discard(self, job: Job) -> None:
        shutil.rmtree(job.dir, ignore_errors=True)

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self.jobs.get(job_id)

    def position(self, job: Job) -> int:
        """How many queued jobs are ahead of ``job`` (0 when it is next or running)."""
        with self._lock:
            waiting = [j for j in self.jobs.values() if j.status == "queued"]
        return sum(j.created < job.created for j in waiting)

    def wait(self, job: Job, timeout: float) -> Job:
        """Block until ``job`` is done or failed (tests and scripts)."""
        end = time.monotonic() + timeout
        while job.status in ("queued", "running") and time.monotonic() < end:
            time.sleep(0.05)
        return job

    # -------------------------------------------------------------------------------------- worker
    def _ensure_worker(self):
        if self._proc is not None and self._proc.is_alive():
            return self._conn
        self._stop_worker()
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")  # never fork a process with threads (and torch)
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=worker_main, args=(child, self.setup, self.setup_args), daemon=True,
                                 name="hmr-web-worker")  # fmt: skip
        self._proc.start()
        child.close()
        end = time.monotonic() + self.limits.startup_timeout
        while time.monotonic() < end and not self._stop.is_set():
            try:
                if self._conn.poll(0.2):
                    msg = self._conn.recv()
                    if msg[0] == "ready":
                        return self._conn
                    self._stop_worker()
                    raise RuntimeError(msg[1])
            except (EOFError, OSError):
                break
            if not self._proc.is_alive() and not self._conn.poll():
                break
        code = self._proc.exitcode
        self._stop_worker()
        raise RuntimeError(f"the pipeline's worker process did not start (exit code {code})")

    def _stop_worker(self) -> None:
        proc, conn = self._proc, self._conn
        self._proc = self._conn = None
        if conn is not None:
            with contextlib.suppress(OSError, ValueError):
                conn.send(None)
        if proc is not None:
            proc.join(timeout=2)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)
        if conn is not None:
            conn.close()

    def _dispatch(self) -> None:
        while not self._stop.is_set():
            try:
                job = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                self._run(job)
            except Exception as err:  # never let one job stop the queue
                self._finish(job, f"internal error: {error_line(err)}")

    def _run(self, job: Job) -> None:
        try:
            conn = self._ensure_worker()
        except RuntimeError as err:
            self._finish(job, error_line(err))
            return
        job.status, job.started = "running", time.monotonic()
        conn.send({"id": job.id, "in": str(job.dir / "in"), "out": str(job.dir / "out"), "name": job.name,
                   "stem": job.stem, "model": job.model, "focal": job.focal, "max_pixels": self.limits.max_pixels,
                   "max_frames": self.limits.max_frames})  # fmt: skip
        deadline = job.started + self.limits.timeout
        while not self._stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                self._stop_worker()  # the only way to stop a running pipeline; the next job gets a fresh one
                self._finish(job, f"stopped after {self.limits.timeout:g} s, the server's limit per request "
                                  "(hmr web --timeout); try a smaller image or a shorter video")  # fmt: skip
                return
            try:
                if not conn.poll(min(left, 0.2)):
                    if not self._proc.is_alive():
                        raise EOFError
                    continue
                msg = conn.recv()
            except (EOFError, OSError):
                code = self._proc.exitcode if self._proc is not None else None
                self._stop_worker()
                self._finish(job, f"the pipeline's worker process stopped (exit code {code}); a new one takes "
                                  "the next request")  # fmt: skip
                return
            if msg[0] == "progress":
                job.progress = tuple(msg[2:])
            elif msg[0] == "done":
                self._finish(job)
                return
            elif msg[0] == "error":
                self._finish(job, msg[2])
                return

    def _finish(self, job: Job, error: str | None = None) -> None:
        shutil.rmtree(job.dir / "in", ignore_errors=True)  # the upload is not needed any more
        if error is None:
            try:
                job.record = json.loads((job.dir / "out" / f"{job.stem}.json").read_text())
            except (OSError, ValueError) as err:
                error = f"no outputs were written ({error_line(err)})"
        if error is not None:
            job.message = error.replace(str(job.dir), "").replace(str(self.root), "")
        job.finished = time.monotonic()
        job.status = "error" if error is not None else "done"

    def _janitor(self) -> None:
        """Remove the outputs of jobs finished more than ``keep`` seconds ago."""
        while not self._stop.wait(min(5.0, max(self.limits.keep / 4, 0.05))):
            now = time.monotonic()
            with self._lock:
                old = [j for j in self.jobs.values() if j.finished is not None and now - j.finished > self.limits.keep]
                for j in old:
                    del self.jobs[j.id]
            for j in old:
                shutil.rmtree(j.dir, ignore_errors=True)

    # -------------------------------------------------------------------------------------- reports
    def report(self, job: Job) -> dict:
        """What the page shows of a job (JSON)."""
        out = {"id": job.id, "status": job.status, "name": job.name, "model": job.model, "focal": job.focal}
        now = time.monotonic()
        if job.status == "queued":
            out["position"] = self.position(job)
        if job.started is not None:
            out["seconds"] = round((job.finished or now) - job.started, 1)
        if job.progress is not None:
            out["progress"] = list(job.progress)
        if job.status == "error":
            out["error"] = job.message
        if job.status == "done" and job.record is not None:
            rec = job.record
            url = f"api/jobs/{job.id}/files/"
            out["files"] = {key: url + name for key, name in (rec.get("files") or {}).items()}
            out["people"] = [
                {"id": p.get("id", p.get("track_id")), "status": p.get("status"), "score": p.get("score"),
                 "files": {fmt: url + name for fmt, name in (p.get("files") or {}).items()}}
                for p in rec.get("people") or []
            ]  # fmt: skip
            out["kind"], out["method"] = rec.get("kind"), rec.get("method")
            out["image_size"], out["camera"] = rec.get("image_size"), rec.get("camera")
            out["frames"] = rec.get("num_frames")
            out["expires_in"] = round(self.limits.keep - (now - job.finished))
        return out


def safe_name(name: str) -> str:
    """An upload's file name reduced to a plain, safe one (letters, digits, ``._-``), extension kept."""
    name = Path(str(name).replace("\\", "/")).name
    stem, ext = os.path.splitext(name)
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", stem).strip("_.")[:80] or "upload"
    ext = re.sub(r"[^A-Za-z0-9]+", "", ext)[:8].lower()
    return f"{stem}.{ext}" if ext else stem


def check_upload(path: Path, name: str, max_pixels: int) -> str:
    """ "image" or "video"; ValueError with ``hmr demo``'s one-line message (naming ``name``) otherwise."""
    from hmr.io.images import read_image
    from hmr.io.video import is_video

    if path.stat().st_size == 0:
        raise ValueError(f"{name}: empty file (0 bytes), not an image")
    if is_video(path):
        return "video"
    try:
        read_image(path, max_pixels)
    except ValueError as err:
        msg = error_line(err).replace(str(path), name)
        if "not an image file" in msg:  # a video would be accepted too
            msg = (f"{name}: not an image or a video this page can read (images: {', '.join(sorted(IMAGE_EXTS))}; "
                   f"videos: {', '.join(sorted(VIDEO_EXTS))})")  # fmt: skip
        raise ValueError(msg) from None
    return "image"


# ------------------------------------------------------------------------------------------ HTTP
def create_app(service: Service, allowed_hosts: list[str] | None = None):
    """The Starlette app: the page, its static files and the JSON API over ``service``."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.middleware import Middleware
    from starlette.middleware.gzip import GZipMiddleware
    from starlette.middleware.trustedhost import TrustedHostMiddleware
    from starlette.responses import FileResponse, JSONResponse, Response
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    limits = service.limits

    def fail(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    async def index(request):
        return FileResponse(PAGE_DIR / "index.html", media_type="text/html", headers={"Cache-Control": "no-cache"})

    async def info(request):
        examples = (
            sorted(p.name for p in service.examples.iterdir() if p.suffix.lower() in IMAGE_EXTS)
            if service.examples
            else []
        )
        return JSONResponse({
            "models": service.models, "examples": examples, "max_upload_bytes": limits.max_upload_bytes,
            "max_pixels": limits.max_pixels, "timeout": limits.timeout, "queue": limits.queue,
            "keep": limits.keep, "max_frames": limits.max_frames,
            "accept": sorted(IMAGE_EXTS | VIDEO_EXTS),
        })  # fmt: skip

    async def create_job(request):
        q = request.query_params
        example = q.get("example")
        try:
            focal = float(q["focal"]) if q.get("focal", "").strip() else None
        except ValueError:
            return fail(400, f"focal length: expected a number of pixels, got {q['focal']!r}")
        declared = request.headers.get("content-length")
        if example is None and declared and declared.isdigit() and int(declared) > limits.max_upload_bytes:
            return fail(413, too_large(int(declared), limits.max_upload_bytes))
        try:
            job = service.new_job(example or q.get("name") or "upload", q.get("model") or None, focal)
        except Busy as err:
            return fail(503, str(err))
        except ValueError as err:
            return fail(400, error_line(err))
        path = service.job_input(job)
        try:
            if example is not None:
                src = service.examples / Path(example).name if service.examples else None
                if src is None or not src.is_file() or src.suffix.lower() not in IMAGE_EXTS:
                    service.discard(job)
                    return fail(404, f"no bundled example called {example!r}")
                await run_in_threadpool(shutil.copyfile, src, path)
            else:
                size = 0
                with open(path, "wb") as f:
                    async for chunk in request.stream():
                        size += len(chunk)
                        if size > limits.max_upload_bytes:
                            service.discard(job)
                            return fail(413, too_large(size, limits.max_upload_bytes, at_least=True))
                        f.write(chunk)
            job.kind = await run_in_threadpool(check_upload, path, job.name, limits.max_pixels)
            service.submit(job)
        except Busy as err:
            return fail(503, str(err))
        except (ValueError, OSError) as err:
            service.discard(job)
            return fail(400, error_line(err).replace(str(job.dir), ""))
        except BaseException:
            service.discard(job)
            raise
        return JSONResponse(service.report(job), status_code=202)

    async def job_status(request):
        job = service.get(request.path_params["id"])
        if job is None:
            return fail(404, "no such request (unknown, or its results expired)")
        return JSONResponse(service.report(job), headers={"Cache-Control": "no-store"})

    async def job_file(request):
        job = service.get(request.path_params["id"])
        name = request.path_params["name"]
        if job is None:
            return fail(404, "no such request (unknown, or its results expired)")
        path = job.dir / "out" / name
        if job.status != "done" or name not in job.files() or not path.is_file():
            return fail(404, f"no file {name!r} in this request's results")
        media = MEDIA_TYPES.get(path.suffix.lower(), "application/octet-stream")
        download = request.query_params.get("download") is not None
        return FileResponse(path, media_type=media, filename=name if download else None,
                            headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"})  # fmt: skip

    async def on_error(request, exc):  # anything unexpected: one line, never a traceback
        return fail(500, f"internal error: {error_line(exc)}")

    routes = [
        Route("/", index),
        Route("/favicon.ico", lambda request: Response(status_code=204)),
        Route("/api/info", info),
        Route("/api/jobs", create_job, methods=["POST"]),
        Route("/api/jobs/{id}", job_status),
        Route("/api/jobs/{id}/files/{name}", job_file),
        Mount("/static", StaticFiles(directory=PAGE_DIR), name="static"),
    ]
    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts or ["*"]),
                  Middleware(GZipMiddleware, minimum_size=2048)]  # fmt: skip
    return Starlette(routes=routes, middleware=middleware, exception_handlers={Exception: on_error})


def too_large(size: int, limit: int, at_least: bool = False) -> str:
    more = "more than " if at_least else ""
    return f"too large: {more}{size / 2**20:.1f} MB is above the upload limit of {limit / 2**20:g} MB (hmr web --max-upload-mb)"


def allowed_hosts(host: str) -> list[str]:
    """Host headers accepted: the loopback names for a loopback address (a page elsewhere that rebinds its
    DNS name to 127.0.0.1 is refused), any for a server deliberately opened to the network."""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    return ["127.0.0.1", "localhost", "[::1]", host] if loopback else ["*"]


# ------------------------------------------------------------------------------------------- CLI
DESCRIPTION = (
    "A web page on this machine for 3D people from images and videos: upload one (or pick an example), choose "
    "the model and focal length, see the overlay, the side view and the meshes in 3D, and download what "
    "hmr demo writes. Binds 127.0.0.1 unless --host says otherwise."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from hmr.apps.demo import _count

    d = Limits()
    p.description = DESCRIPTION
    p.add_argument("settings", nargs="*", help="section.key=value config overrides (hmr config show lists them)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=_count(0), default=8000, help="port (default 8000; 0: any free one)")
    p.add_argument("--config", type=Path, help="pipeline config YAML (hmr config show writes one)")
    p.add_argument("--checkpoint", "--model", dest="checkpoint",
                   help="also offer this network checkpoint or registry name (fitting stays the default)")  # fmt: skip
    p.add_argument("--refine", action="store_true", default=None, help="with --checkpoint: refine by fitting")
    p.add_argument("--smpl", help="SMPL model file (.pkl/.npz) instead of the bundled default body model")
    p.add_argument("--smpl-j19", help="with --smpl and --checkpoint: SMPL_to_J19.pkl")
    p.add_argument("--device", help="cpu, cuda or mps (default cpu)")
    p.add_argument(
        "--examples", type=Path, help="folder of example images to offer (default: the repository's examples/)"
    )
    g = p.add_argument_group("limits per request")
    g.add_argument(
        "--max-upload-mb",
        type=float,
        default=d.max_upload_bytes / 2**20,
        help="largest upload (default %(default)g MB)",
    )
    g.add_argument(
        "--max-pixels",
        type=_count(0),
        help=f"refuse larger images and video frames (default {MAX_PIXELS}; 0: no limit)",
    )
    g.add_argument(
        "--max-frames", type=_count(1), default=d.max_frames, help="videos: frames processed (default %(default)s)"
    )
    g.add_argument("--timeout", type=float, default=d.timeout, help="seconds one request may run (default %(default)g)")
    g.add_argument(
        "--queue", type=_count(1), default=d.queue, help="requests that may wait; more get 'busy' (default %(default)s)"
    )
    g.add_argument("--keep", type=float, default=d.keep, help="seconds results stay downloadable (default %(default)g)")
    p.set_defaults(run=run, overrides=[])


def model_configs(cfg) -> dict:
    """Model choice -> its PipelineConfig: fitting first (the default), then the checkpoint when given."""
    from hmr import config as config_io

    out = {FITTING: config_io.override(cfg, network={"checkpoint": None, "refine": False})}
    if cfg.network.checkpoint is not None:
        out[Path(cfg.network.checkpoint).name] = cfg
    return out


def default_examples() -> Path | None:
    path = Path(__file__).resolve().parents[2] / "examples"
    return path if path.is_dir() else None


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from hmr import config as config_io
    from hmr.apps.demo import resolve_config

    others, overrides = config_io.split_overrides(args.settings)
    if others:
        raise ValueError(f"hmr web takes no input files (upload them in the page); got {' '.join(others)}")
    cfg = resolve_config(args, [*overrides, *args.overrides])
    limits = Limits(max_upload_bytes=int(args.max_upload_mb * 2**20), max_pixels=cfg.outputs.max_pixels,
                    timeout=args.timeout, queue=args.queue, keep=args.keep, max_frames=args.max_frames)  # fmt: skip
    if min(limits.max_upload_bytes, limits.timeout, limits.keep) <= 0:
        raise ValueError("--max-upload-mb, --timeout and --keep must be positive")
    if args.examples is not None and not args.examples.is_dir():
        raise ValueError(f"--examples {args.examples}: not a folder")
    configs = model_configs(cfg)
    sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
        sock.listen(128)  # connections wait from now on, until uvicorn accepts them
    except OSError as err:
        sock.close()
        raise ValueError(f"cannot listen on {args.host}:{args.port} ({err.strerror or err})") from None
    hosts = allowed_hosts(args.host)
    if hosts == ["*"]:
        warn(f"--host {args.host}: the page is open to other machines; anyone who can reach it can upload files")
    service = Service(DemoRunner, (configs,), list(configs), limits, args.examples or default_examples())
    try:
        print(f"hmr web: loading the pipeline ({', '.join(configs)})...", file=sys.stderr, flush=True)
        service.start()
        port = sock.getsockname()[1]
        shown = f"[{args.host}]" if ":" in args.host else args.host
        print(f"hmr web: serving on http://{shown}:{port}/ (Ctrl-C stops)", flush=True)
        config = uvicorn.Config(create_app(service, hosts), log_level="warning", timeout_keep_alive=5,
                                limit_concurrency=64, timeout_graceful_shutdown=3)  # fmt: skip
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        service.close()
        sock.close()
    return 0
