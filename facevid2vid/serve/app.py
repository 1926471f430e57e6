"""The aiohttp application: pages, the animate / free-view API and the call's signalling.

Every failure a user can cause (a bad upload, a photo with no face, a too-long video, an
unknown id) is answered as JSON ``{"error": "one line"}`` with a 4xx status, and the server
keeps serving; anything unexpected is logged and answered with 500. Model work runs in
worker threads, never on the event loop.
"""
from __future__ import annotations

import asyncio
import logging
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

from aiohttp import web

from facevid2vid.errors import FaceVid2VidError
from facevid2vid.serve.jobs import RESULT_FILES, AnimateOptions, JobRunner
from facevid2vid.serve.photos import PhotoStore, png_bytes, sample_stills
from facevid2vid.serve.rtc import CallManager
from facevid2vid.serve.settings import ServeSettings
from facevid2vid.serve.uploads import UploadError, Workspace, check_video, extension, save_part, shown_name

log = logging.getLogger(__name__)
STATIC = Path(__file__).resolve().parent / "static"
MAX_FIELDS = 16  # multipart parts in one request
MAX_FIELD_BYTES = 1024  # a text field


class Server:
    """What the routes share: the model, the workspace, photos, jobs and calls."""

    def __init__(self, settings: ServeSettings, animator=None, call_animator=None):
        """``animator`` (default: loaded from the settings) also serves the call unless ``call_animator``."""
        from facevid2vid.pipeline import load_animator

        settings.validate()
        self.settings = settings
        if animator is None:
            animator = load_animator(settings.checkpoint, settings.device)
            if call_animator is None and settings.call_model != settings.checkpoint:
                call_animator = load_animator(settings.call_model, settings.device)
        self.animator = animator
        self.call_animator = call_animator or animator
        self.workspace = Workspace()
        limits = settings.limits
        self.photos = PhotoStore(self.animator, self.workspace, limits.photos_kept)
        self.jobs = JobRunner(self.animator, self.workspace, limits.jobs_kept, limits.jobs_queued)
        self.calls = CallManager(self.call_animator, settings.call, settings.max_parties, settings.max_rooms)
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="photos")

    async def run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    async def close(self) -> None:
        await self.calls.close_all()
        self.jobs.shutdown()
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.workspace.cleanup()


def json_error(message: str, status: int) -> web.Response:
    return web.json_response({"error": " ".join(str(message).split())}, status=status)


@web.middleware
async def errors(request: web.Request, handler):
    """One error path: user errors as JSON with a 4xx status; the server keeps serving."""
    try:
        return await handler(request)
    except UploadError as exc:
        return json_error(str(exc), exc.status)
    except FaceVid2VidError as exc:
        return json_error(str(exc), 400)
    except web.HTTPException as exc:
        if request.path.startswith("/api/") and exc.status >= 400:
            return json_error(exc.reason, exc.status)
        raise
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception as exc:  # noqa: BLE001 - logged, answered, and the server goes on
        log.exception("error in %s %s", request.method, request.path)
        return json_error(f"unexpected {type(exc).__name__} on the server (see its log)", 500)


async def read_form(request: web.Request, folder: Path, files: dict[str, tuple[str, int, str]]):
    """Text fields and uploaded files of a multipart form: (fields, {name: (path, shown name)}).

    ``files`` maps a field name to (kind "image"/"video", byte limit, what it is); each file is
    stored in ``folder`` under a name made here.
    """
    if request.content_type == "application/x-www-form-urlencoded":  # text fields only (1 MB at most)
        return {str(k): str(v) for k, v in (await request.post()).items()}, {}
    if not request.content_type.startswith("multipart/"):
        raise UploadError("expected a form upload (multipart/form-data)")
    reader = await request.multipart()
    fields: dict[str, str] = {}
    saved: dict[str, tuple[Path, str]] = {}
    for _ in range(MAX_FIELDS):
        part = await reader.next()
        if part is None:
            return fields, saved
        if part.filename is not None:
            if part.name not in files:
                raise UploadError(f"unexpected file in form field {shown_name(part.name, '?')!r}")
            kind, limit, what = files[part.name]
            dest = folder / f"{part.name}{extension(part.filename, kind)}"
            await save_part(part, dest, limit, what)
            saved[part.name] = (dest, shown_name(part.filename, what))
        else:
            fields[str(part.name)] = await read_field(part)
    raise UploadError(f"too many form fields (at most {MAX_FIELDS})")


async def read_field(part) -> str:
    """A text field, at most MAX_FIELD_BYTES (read in chunks: a huge field is refused, not loaded)."""
    data = b""
    while len(data) <= MAX_FIELD_BYTES:
        chunk = await part.read_chunk(4096)
        if not chunk:
            return data.decode("utf-8", "replace")
        data += chunk
    raise UploadError(f"form field {shown_name(part.name, 'field')} is too long")


def number(fields, name: str, default: float = 0.0) -> float:
    text = fields.get(name, "")
    if text in ("", None):
        return default
    try:
        return float(text)
    except ValueError:
        raise UploadError(f"{name} must be a number, got {shown_name(str(text), '?')!r}") from None


def flag(fields, name: str) -> bool:
    return str(fields.get(name, "")).lower() in ("1", "true", "on", "yes")


SERVER = web.AppKey("server", Server)


def page(name: str):
    async def handler(request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / name, headers={"Cache-Control": "no-cache"})

    return handler


async def info(request: web.Request) -> web.Response:
    server = request.app[SERVER]
    cfg = server.animator.model.cfg
    return web.json_response({"model": cfg.name, "size": cfg.image_size, "device": str(server.animator.device),
                              "call_model": server.call_animator.model.cfg.name,
                              "samples": sorted(sample_stills()), "limits": asdict(server.settings.limits),
                              "call": asdict(server.settings.call)})


async def sample_image(request: web.Request) -> web.StreamResponse:
    stills = sample_stills()
    name = request.match_info["name"]
    if name not in stills:
        raise UploadError(f"no sample photo {shown_name(name, '?')!r}", status=404)
    return web.FileResponse(stills[name])


async def upload_photo(request: web.Request) -> web.Response:
    """A photo file (field "photo") or a sample's name (field "sample") -> its id, cropped and encoded."""
    server = request.app[SERVER]
    ident, folder = server.workspace.folder()
    try:
        limit = server.settings.limits.photo_bytes
        fields, saved = await read_form(request, folder, {"photo": ("image", limit, "photo")})
        if "photo" in saved:
            photo = await server.run(server.photos.add, *saved["photo"], ident, folder)
        elif fields.get("sample"):
            server.workspace.remove(folder)
            photo = await server.run(server.photos.add_sample, fields["sample"])
        else:
            raise UploadError("choose a photo to upload, or a sample photo")
    except BaseException:
        server.workspace.remove(folder)
        raise
    return web.json_response({"id": photo.id, "name": photo.name})


async def photo_crop(request: web.Request) -> web.Response:
    photo = request.app[SERVER].photos.get(request.match_info["id"])
    return web.Response(body=png_bytes(photo.crop), content_type="image/png")


async def photo_view(request: web.Request) -> web.Response:
    """The photo re-posed by the query's yaw, pitch, roll (degrees) and frontalize (0/1), as PNG."""
    server, q = request.app[SERVER], request.query
    args = (request.match_info["id"], number(q, "yaw"), number(q, "pitch"), number(q, "roll"), flag(q, "frontalize"))
    loop = asyncio.get_running_loop()
    start = loop.time()
    frame = await server.run(server.photos.render, *args)
    ms = f"{1000 * (loop.time() - start):.0f}"
    return web.Response(body=png_bytes(frame), content_type="image/png",
                        headers={"X-Render-Ms": ms, "Cache-Control": "no-store"})


async def animate(request: web.Request) -> web.Response:
    """Start an animate job: field "photo_id", the "driving" video file and the options."""
    server = request.app[SERVER]
    limits = server.settings.limits
    ident, folder = server.workspace.folder()
    try:
        fields, saved = await read_form(request, folder, {"driving": ("video", limits.video_bytes, "driving video")})
        photo = server.photos.get(fields.get("photo_id", ""))
        if "driving" not in saved:
            raise UploadError("choose a driving video")
        path, name = saved["driving"]
        await server.run(check_video, path, name, limits.video_seconds, limits.video_frames)
        options = AnimateOptions(fields.get("mode", "relative"), number(fields, "yaw"), number(fields, "pitch"),
                                 number(fields, "roll"), flag(fields, "frontalize"), flag(fields, "smooth"))
        job = server.jobs.submit(photo, path, name, ident, folder, options)
    except BaseException:
        server.workspace.remove(folder)
        raise
    return web.json_response(job.public())


async def job_status(request: web.Request) -> web.Response:
    return web.json_response(request.app[SERVER].jobs.get(request.match_info["id"]).public())


async def job_file(request: web.Request) -> web.FileResponse:
    name = request.match_info["file"]
    path = request.app[SERVER].jobs.file(request.match_info["id"], name)
    headers = {"Cache-Control": "no-store"}
    if "download" in request.query:
        headers["Content-Disposition"] = f'attachment; filename="facevid2vid-{name}"'
    return web.FileResponse(path, headers={**headers, "Content-Type": RESULT_FILES[name]})


async def _json(request: web.Request) -> dict:
    try:
        body = await request.json()
    except ValueError:
        raise UploadError("expected a JSON body") from None
    if not isinstance(body, dict):
        raise UploadError("expected a JSON object")
    return body


async def call_offer(request: web.Request) -> web.Response:
    """WebRTC signalling: the browser's offer {sdp, type, room} -> the server's answer and the party id."""
    body = await _json(request)
    if body.get("type") != "offer" or not isinstance(body.get("sdp"), str):
        raise UploadError("expected {\"type\": \"offer\", \"sdp\": ...}")
    answer = await request.app[SERVER].calls.offer(body["sdp"], "offer", str(body.get("room") or "default"))
    return web.json_response(answer)


async def call_stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[SERVER].calls.stats(request.match_info["peer"]))


async def call_history(request: web.Request) -> web.Response:
    """A recent snapshot of figures by number (checks what a page showed)."""
    q = request.query
    seq = int(number(q, "seq", -1))
    which = "receiving" if q.get("which") == "receiving" else "sending"
    return web.json_response(request.app[SERVER].calls.history(request.match_info["peer"], seq, which))


async def call_settings(request: web.Request) -> web.Response:
    """{loss: 0..1, compare: bool}, each optional: the packet-loss slider and the H.264 tile switch."""
    body, calls, peer = await _json(request), request.app[SERVER].calls, request.match_info["peer"]
    unknown = set(body) - {"loss", "compare"}
    if unknown:
        raise UploadError(f"unknown call settings: {', '.join(sorted(map(str, unknown)))}")
    done = {}
    if "loss" in body:
        done["loss"] = calls.set_loss(peer, body["loss"])
    if "compare" in body:
        done["compare"] = calls.set_compare(peer, body["compare"])
    return web.json_response(done)


async def call_h264(request: web.Request) -> web.Response:
    """The H.264 comparison tile's latest frame (PNG)."""
    frame = request.app[SERVER].calls.h264_frame(request.match_info["peer"])
    return web.Response(body=png_bytes(frame), content_type="image/png", headers={"Cache-Control": "no-store"})


async def call_hangup(request: web.Request) -> web.Response:
    calls = request.app[SERVER].calls
    try:
        party = calls.get(request.match_info["peer"])
    except UploadError:
        return web.json_response({"ended": False})
    await calls.remove(party)
    return web.json_response({"ended": True})


def build_app(server: Server) -> web.Application:
    """The application with every route; closing it ends the calls and removes the temporary files."""
    app = web.Application(middlewares=[errors], client_max_size=1 << 20)
    app[SERVER] = server
    app.router.add_get("/", page("index.html"))
    app.router.add_get("/call", page("call.html"))
    app.router.add_static("/static/", STATIC, follow_symlinks=False)
    app.router.add_get("/api/info", info)
    app.router.add_get("/api/samples/{name}", sample_image)
    app.router.add_post("/api/photo", upload_photo)
    app.router.add_get("/api/photo/{id}/crop.png", photo_crop)
    app.router.add_get("/api/photo/{id}/view", photo_view)
    app.router.add_post("/api/animate", animate)
    app.router.add_get("/api/jobs/{id}", job_status)
    app.router.add_get("/api/jobs/{id}/{file}", job_file)
    app.router.add_post("/api/call/offer", call_offer)
    app.router.add_get("/api/call/{peer}/stats", call_stats)
    app.router.add_get("/api/call/{peer}/history", call_history)
    app.router.add_post("/api/call/{peer}/settings", call_settings)
    app.router.add_get("/api/call/{peer}/h264.png", call_h264)
    app.router.add_post("/api/call/{peer}/hangup", call_hangup)

    async def on_shutdown(_app):
        await server.close()

    app.on_shutdown.append(on_shutdown)
    return app


def serve(settings: ServeSettings, animator=None) -> None:
    """Load the model, listen, serve until Ctrl-C (then end the calls and remove the temporary files)."""
    settings.validate()
    if settings.public:
        print(f"facevid2vid serve: warning: listening on {settings.host}: anyone who can reach this machine "
              f"can use the server and its camera calls (there is no login)", file=sys.stderr, flush=True)
    print("facevid2vid serve: loading the model ...", file=sys.stderr, flush=True)
    server = Server(settings, animator)
    url = f"http://{'127.0.0.1' if settings.host == '0.0.0.0' else settings.host}:{settings.port}"

    def ready(_message: str) -> None:
        print(f"facevid2vid serve: {url}/ (animate, free view: {server.animator.model.cfg.name}) and {url}/call "
              f"(live call: {server.call_animator.model.cfg.name}); Ctrl-C stops", flush=True)

    logging.basicConfig(level=logging.WARNING, format="facevid2vid serve: %(message)s")
    try:
        web.run_app(build_app(server), host=settings.host, port=settings.port, print=ready, access_log=None,
                    shutdown_timeout=2.0)
    finally:
        server.workspace.cleanup()  # also when listening failed
