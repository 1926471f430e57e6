"""`facevid2vid serve`: the call's session layer, the upload API, and both pages in a real browser.

Fast tests run the server-side loop (tracker -> encoder -> lossy link -> decoder) on frames
of a real sample clip with a tiny random model, and the HTTP API in-process. The browser
tests start `facevid2vid serve` with the bundled model and drive Debian's chromium through
Playwright (fake camera fed from a .y4m made here from the sample clip); they skip when
chromium or the playwright package is missing (.ci/run installs both).
"""
from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("aiohttp")
pytest.importorskip("aiortc")

from facevid2vid.checkpoint import save_checkpoint  # noqa: E402
from facevid2vid.codec import bitstream as bs  # noqa: E402
from facevid2vid.config import model_preset  # noqa: E402
from facevid2vid.inference import Animator  # noqa: E402
from facevid2vid.models import FaceVid2Vid  # noqa: E402
from facevid2vid.serve.session import CallDirection, CapturedFrame, Inbox  # noqa: E402
from facevid2vid.serve.settings import CallSettings, LinkSettings, ServeSettings, UploadLimits  # noqa: E402
from facevid2vid.video_io import read_video, write_video  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = FaceVid2Vid(model_preset("tiny")).eval()
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors", model)


@pytest.fixture(scope="module")
def tiny_animator(tiny_ckpt, one_thread):
    from facevid2vid.checkpoint import load_checkpoint

    return Animator(load_checkpoint(tiny_ckpt), device="cpu")


@pytest.fixture(scope="module")
def franck_frames(samples):
    """60 frames (2.5 s) of the sample clip, full frames uint8 (N, 288, 360, 3)."""
    return read_video(samples.franck, max_frames=60)[0]


def _run_call(direction: CallDirection, frames: np.ndarray, batch: int = 2) -> list:
    out = []
    for i in range(0, len(frames), batch):
        out += direction.step([CapturedFrame(f, time.monotonic()) for f in frames[i:i + batch]])
    return out


# -- the session layer ------------------------------------------------------------------------


def test_call_loop_delivers_every_frame_without_loss(tiny_animator, franck_frames):
    direction = CallDirection(tiny_animator, CallSettings(output_size=96))
    out = _run_call(direction, franck_frames[:30])
    snap = direction.snapshot()
    assert [f.index for f in out] == list(range(30)), "every camera frame (a face in each) is shown in order"
    assert out[0].is_key and all(f.image.shape == (96, 96, 3) and f.image.dtype == np.uint8 for f in out)
    assert all(f.latency >= 0 for f in out)
    sender, link, receiver = snap["sender"], snap["link"], snap["receiver"]
    assert sender["key_reasons"].get("first") == 1 and receiver["losses"] == 0 and receiver["synced"]
    assert link["bytes"] == sender["key_bytes"] + sender["motion_bytes"] and link["dropped"] == 0
    expected = 8 * (sender["header_bytes"] + link["bytes"]) / snap["elapsed"] / 1000
    assert snap["kbps"]["total"] == pytest.approx(expected, rel=1e-2)
    assert 0 < sender["motion_bits_per_frame"] < 400 and receiver["latency_ms_p95"] is not None
    assert direction.find(snap["seq"]) == snap and direction.find(-1) is None


def test_lost_packets_are_reported_a_key_frame_is_asked_for_and_the_call_recovers(tiny_animator, franck_frames):
    settings = CallSettings(output_size=64, key_retry=0.0, link=LinkSettings(loss=0.2, seed=3))
    direction = CallDirection(tiny_animator, settings)
    out = _run_call(direction, franck_frames)
    snap = direction.snapshot()
    link, receiver, sender = snap["link"], snap["receiver"], snap["sender"]
    assert link["dropped"] + link["corrupted"] >= 3, link
    assert receiver["losses"] >= 2 and receiver["key_requests"] >= receiver["losses"]
    assert sender["key_reasons"].get("requested", 0) >= 1 and receiver["recoveries"] >= 1
    statuses = receiver["statuses"]
    assert statuses.get("corrupt", 0) + statuses.get("missing", 0) + statuses.get("skipped", 0) >= 2
    assert receiver["last_problem"]
    # after each loss the receiver shows nothing until a key frame, then motion frames again
    indices = [f.index for f in out]
    assert indices == sorted(indices) and len(out) < len(franck_frames)
    resumed = [f for f in out if f.is_key and f.index > 0]
    assert resumed and any(f.index > resumed[0].index for f in out if not f.is_key)


def test_a_lost_first_key_frame_is_asked_for_again(tiny_animator, franck_frames):
    direction = CallDirection(tiny_animator, CallSettings(output_size=64, key_retry=0.0))
    send = direction.link.send
    direction.link.send = lambda packet: None if packet[0] == bs.PACKET_KEY and direction.link.packets == 0 \
        else send(packet)
    first = direction.step([CapturedFrame(f, time.monotonic()) for f in franck_frames[:2]])
    assert first == [] and direction.receiver.key_requests == 1  # motion without its key frame: skipped
    out = direction.step([CapturedFrame(f, time.monotonic()) for f in franck_frames[2:4]])
    assert [f.is_key for f in out] == [True, False]
    assert direction.sender.encoder.stats.key_reasons["requested"] == 1


def test_frames_before_a_face_is_seen_are_not_sent(tiny_animator, franck_frames):
    direction = CallDirection(tiny_animator, CallSettings(output_size=64))
    blank = np.full_like(franck_frames[0], 30)
    out = direction.step([CapturedFrame(blank, time.monotonic()) for _ in range(3)])
    assert out == [] and direction.sender.no_face == 3 and direction.link.packets == 0
    # the detector runs on every 5th frame (CallSettings.detect_every): frame 5 finds the face
    out = direction.step([CapturedFrame(f, time.monotonic()) for f in franck_frames[:5]])
    assert len(out) == 3 and out[0].is_key and direction.sender.no_face == 5


def test_h264_tile_codes_at_the_asked_rate_and_reopens_when_it_moves(franck_frames):
    from facevid2vid.serve.h264 import H264Tile

    crops = np.ascontiguousarray(franck_frames[:50, 40:168, 100:228])  # (50, 128, 128, 3)
    tile = H264Tile(128)
    for i in range(0, 25, 5):
        tile.push(crops[i:i + 5], 40.0, 25.0)
    start = tile.started
    stats = tile.stats(start + 1.0)  # 25 frames: one second of video at 25 fps
    assert stats["frames"] == 25 and tile.latest.shape == (128, 128, 3) and stats["restarts"] == 0
    assert stats["kbps"] == pytest.approx(8 * tile.bytes / 1000) and 20 < stats["kbps"] < 80, stats
    assert 20 < stats["psnr_db"] < 50
    tile.push(crops[25:30], 200.0, 25.0)  # the call's rate moved: a new stream at the new target
    assert tile.restarts == 1 and tile.target_kbps == 200.0 and tile.frames == 30
    before = tile.bytes
    tile.push(crops[30:50], 200.0, 12.0)  # frames come at half the rate: bits per frame follow
    assert tile.restarts == 2 and tile.fps == 12.0 and tile.frames == 50
    kbps = 8 * (tile.bytes - before) / (20 / 12) / 1000  # over the 20 frames' time at 12 fps
    print(f"H.264 at 12 fps for a target of 200 kbps: {kbps:.1f} kbps")
    assert 100 < kbps < 320
    with pytest.raises(ValueError, match="expected crops"):
        tile.push(crops[:1, :64], 40.0, 25.0)


def test_the_comparison_tile_follows_the_call_and_switches_off(tiny_animator, franck_frames, monkeypatch):
    import facevid2vid.serve.session as session

    monkeypatch.setattr(session, "COMPARE_AFTER", 0.0)  # from the first frames on (the call lasts < 2 s here)
    direction = CallDirection(tiny_animator, CallSettings(output_size=64))
    direction.set_compare(True)
    _run_call(direction, franck_frames[:20])
    tile, snap = direction.h264, direction.snapshot()
    assert tile.frames >= 15 and tile.latest.shape == (tiny_animator.image_size,) * 2 + (3,)
    assert snap["h264"]["frames"] == tile.frames and snap["h264"]["target_kbps"] > 0
    assert snap["stage_s"]["h264"] > 0
    direction.set_compare(False)
    _run_call(direction, franck_frames[20:24])
    assert direction.h264 is None and direction.snapshot()["h264"] is None


def test_inbox_is_bounded_and_keeps_the_newest():
    inbox = Inbox(2)
    for i in range(5):
        inbox.put(CapturedFrame(np.zeros((2, 2, 3), np.uint8), float(i)))
    assert inbox.received == 5 and inbox.dropped == 3
    assert [f.time for f in inbox.take(1)] == [4.0] and inbox.dropped == 4 and inbox.take(3) == []


def test_settings_are_checked():
    from facevid2vid.errors import InputError

    for bad in (LinkSettings(loss=0.9), CallSettings(max_batch=0), ServeSettings(port=70000),
                ServeSettings(limits=UploadLimits(video_seconds=0))):
        with pytest.raises(InputError):
            bad.validate()
    assert ServeSettings(host="0.0.0.0").public and not ServeSettings().public


def test_the_call_uses_the_real_time_model_unless_told_otherwise(tiny_animator, tiny_ckpt):
    from facevid2vid.checkpoint import load_checkpoint, read_checkpoint_config, realtime_checkpoint
    from facevid2vid.serve.app import Server

    realtime = realtime_checkpoint()
    assert realtime is not None and read_checkpoint_config(realtime).name == "realtime-thin-128"
    assert ServeSettings().call_model == str(realtime)
    assert ServeSettings(checkpoint="mine.safetensors").call_model == "mine.safetensors"
    assert ServeSettings(checkpoint="a.safetensors", call_checkpoint="b.safetensors").call_model == "b.safetensors"
    other = Animator(load_checkpoint(tiny_ckpt), device="cpu")
    server = Server(ServeSettings(), animator=tiny_animator, call_animator=other)
    try:
        assert server.calls.animator is other and server.jobs.animator is tiny_animator
    finally:
        server.workspace.cleanup()


# -- the HTTP API, in-process -------------------------------------------------------------------


def _api(animator, limits: UploadLimits, scenario):
    """Run ``scenario(client, server)`` against the app in-process; the app is closed afterwards."""
    from aiohttp.test_utils import TestClient, TestServer

    from facevid2vid.serve.app import Server, build_app

    async def main():
        server = Server(ServeSettings(limits=limits), animator=animator)
        client = TestClient(TestServer(build_app(server)))
        await client.start_server()
        try:
            return server, await scenario(client, server)
        finally:
            await client.close()

    return asyncio.run(main())


def _form(**fields):
    import aiohttp

    form = aiohttp.FormData()
    for name, value in fields.items():
        if isinstance(value, Path):
            form.add_field(name, value.read_bytes(), filename=value.name)
        elif isinstance(value, tuple):
            form.add_field(name, value[1], filename=value[0])
        else:
            form.add_field(name, str(value))
    return form


async def _error(response, status: int) -> str:
    assert response.status == status, await response.text()
    return (await response.json())["error"]


async def _wait_job(client, ident: str, timeout: float = 120.0) -> dict:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        job = await (await client.get(f"/api/jobs/{ident}")).json()
        if job["state"] in ("done", "error"):
            return job
        await asyncio.sleep(0.2)
    raise AssertionError(f"job {ident} did not finish: {job}")


def _gradient_clip(path: Path, n: int) -> Path:
    y, x = np.mgrid[0:96, 0:128]
    frames = [np.stack([(x + 3 * t) % 256, (y + t) % 256, np.full_like(x, 128)], -1).astype(np.uint8)
              for t in range(n)]
    write_video(path, frames, 24)
    return path


def test_bad_uploads_get_one_line_errors_and_the_server_keeps_serving(tiny_animator, samples, tmp_path):
    from PIL import Image

    gray = tmp_path / "gray.png"
    Image.fromarray(np.full((120, 120, 3), 128, np.uint8)).save(gray)
    noise = tmp_path / "big.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (400, 400, 3), dtype=np.uint8)).save(noise)
    short, long = tmp_path / "short.mp4", tmp_path / "long.mp4"
    frames = read_video(samples.franck, max_frames=40)[0]
    write_video(short, frames[:20], 24)
    write_video(long, frames, 24)
    audrey = samples.held_out_stills()[0]

    async def scenario(client, server):
        post = client.post
        assert "cannot read image bad.jpg" in await _error(await post("/api/photo", data=_form(
            photo=("bad.jpg", b"not an image"))), 400)
        assert "no face found in gray.png" in await _error(await post("/api/photo", data=_form(photo=gray)), 400)
        assert "over the limit" in await _error(await post("/api/photo", data=_form(photo=noise)), 413)
        assert "no sample photo" in await _error(await post("/api/photo", data=_form(sample="../../etc/passwd")),
                                                 400)
        assert "expected a form" in await _error(await post("/api/photo", data=b"{}"), 400)
        photo = await (await post("/api/photo", data=_form(photo=audrey))).json()
        ident = photo["id"]
        view = await client.get(f"/api/photo/{ident}/view", params={"yaw": "20", "frontalize": "0"})
        assert view.status == 200 and view.content_type == "image/png"
        png = np.asarray(Image.open(__import__("io").BytesIO(await view.read())))
        assert png.shape == (64, 64, 3)
        assert "finite angle" in await _error(await client.get(f"/api/photo/{ident}/view?yaw=500"), 400)
        assert "must be a number" in await _error(await client.get(f"/api/photo/{ident}/view?yaw=abc"), 400)
        assert "unknown photo" in await _error(await client.get("/api/photo/..%2F..%2Fetc/view"), 404)
        assert "unknown photo" in await _error(await client.get(f"/api/photo/{'0' * 32}/view"), 404)
        assert "trim it first" in await _error(await post("/api/animate", data=_form(photo_id=ident, driving=long)),
                                               413)
        assert "cannot read video" in await _error(await post("/api/animate", data=_form(
            photo_id=ident, driving=("clip.mp4", b"\x00" * 2000))), 400)
        assert "mode must be" in await _error(await post("/api/animate", data=_form(
            photo_id=ident, mode="sideways", driving=short)), 400)
        assert "unknown photo" in await _error(await post("/api/animate", data=_form(photo_id="x", driving=short)),
                                               404)
        assert "unexpected file" in await _error(await post("/api/animate", data=_form(
            photo_id=ident, other=("x.mp4", b"\x00" * 10))), 400)
        assert "too long" in await _error(await post("/api/animate", data=_form(
            photo_id="y" * 5000, driving=short)), 400)
        leftovers = sorted(p.name for p in server.workspace.root.iterdir())
        info = await (await client.get("/api/info")).json()  # still serving
        return leftovers, info

    server, (leftovers, info) = _api(tiny_animator, UploadLimits(photo_bytes=200_000, video_seconds=1.5), scenario)
    assert leftovers == [next(iter(server.photos.photos))]  # only the good photo's folder is kept
    assert info["size"] == 64 and "audrey.jpg" in info["samples"]
    assert not server.workspace.root.exists()  # closing the app removes every temporary file


def test_an_animate_job_reports_progress_and_gives_the_right_number_of_frames(tiny_animator, samples, tmp_path):
    short = tmp_path / "short.mp4"
    write_video(short, read_video(samples.franck, max_frames=30)[0], 24)
    faceless = _gradient_clip(tmp_path / "faceless.mp4", 12)

    async def scenario(client, server):
        photo = await (await client.post("/api/photo", data=_form(sample="audrey.jpg"))).json()
        started = await (await client.post("/api/animate", data=_form(
            photo_id=photo["id"], mode="absolute", yaw="10", smooth="1", driving=short))).json()
        job = await _wait_job(client, started["id"])
        files = {}
        for name in job["files"]:
            response = await client.get(f"/api/jobs/{job['id']}/{name}", params={"download": "1"})
            assert response.status == 200
            files[name] = tmp_path / f"got-{name}"
            files[name].write_bytes(await response.read())
        assert "no file" in await _error(await client.get(f"/api/jobs/{job['id']}/..%2Fx"), 404)
        bad = await (await client.post("/api/animate", data=_form(photo_id=photo["id"], driving=faceless))).json()
        return job, files, await _wait_job(client, bad["id"])

    _, (job, files, bad) = _api(tiny_animator, UploadLimits(), scenario)
    assert job["state"] == "done" and job["done"] == job["total"] == 30, job
    frames, fps = read_video(files["result.mp4"])
    assert frames.shape == (30, 64, 64, 3) and fps == pytest.approx(24)
    assert read_video(files["side.mp4"])[0].shape == (30, 64, 128, 3)
    from facevid2vid.video_io import read_image

    assert read_image(files["strip.png"]).shape == (128, 64 * 7, 3)
    assert bad["state"] == "error" and "no face found in the driving video faceless.mp4" in bad["error"], bad


def test_serve_warns_when_open_to_the_network(tiny_animator, monkeypatch, capsys):
    import facevid2vid.serve.app as app

    seen = {}
    monkeypatch.setattr(app.web, "run_app", lambda application, **kw: seen.update(kw))
    app.serve(ServeSettings(host="0.0.0.0", port=0), animator=tiny_animator)
    err = capsys.readouterr().err
    assert "warning: listening on 0.0.0.0" in err and seen["host"] == "0.0.0.0"
    app.serve(ServeSettings(port=0), animator=tiny_animator)
    assert "warning" not in capsys.readouterr().err


def test_serve_command_help(capsys):
    from facevid2vid.cli import main

    assert main(["serve", "--help"]) == 0 and "--port" in capsys.readouterr().out
    assert main(["serve", "--port", "99999"]) == 2


# -- in a real browser ------------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _y4m(video: Path, path: Path, frames: int = 125, fps: int = 25) -> Path:
    """A fake camera for chromium: the first frames of a sample clip as a .y4m file (decoded with PyAV)."""
    import av

    raw = read_video(video, max_frames=frames)[0]
    h, w = raw.shape[1:3]
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for rgb in raw:
            f.write(b"FRAME\n")
            f.write(av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p").to_ndarray().tobytes())
    return path


class LiveServer:
    """`facevid2vid serve` in a subprocess (bundled model, CPU), its output collected."""

    def __init__(self, tmp: Path):
        import threading

        self.tmp, self.port = tmp, _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "TMPDIR": str(tmp),
               "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen([sys.executable, "-m", "facevid2vid", "serve", "--port", str(self.port),
                                      "--device", "cpu"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True).start()
        end = time.monotonic() + 180
        while not any("Ctrl-C stops" in line for line in self.lines):
            if self.proc.poll() is not None or time.monotonic() > end:
                self.proc.kill()
                raise AssertionError("the server did not start:\n" + "".join(self.lines))
            time.sleep(0.2)

    def get(self, path: str) -> dict:
        import json
        import urllib.request

        with urllib.request.urlopen(self.url + path, timeout=30) as response:
            return json.loads(response.read())

    def stop(self) -> float:
        """Ctrl-C; returns how long the server took to exit (it must exit 0 and leave no files)."""
        import signal

        start = time.monotonic()
        self.proc.send_signal(signal.SIGINT)
        assert self.proc.wait(timeout=60) == 0, "".join(self.lines)
        assert not list(self.tmp.glob("facevid2vid-serve-*")), "temporary files left behind"
        return time.monotonic() - start


@pytest.fixture(scope="module")
def live_server(tmp_path_factory):
    server = LiveServer(tmp_path_factory.mktemp("serve-tmp"))
    yield server
    print(f"server stopped {server.stop():.1f} s after Ctrl-C")


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory):
    folder = Path(os.environ.get("FACEVID2VID_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser(tmp_path_factory, samples):
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (drives the system chromium)")
    camera = _y4m(samples.franck, tmp_path_factory.mktemp("camera") / "franck.y4m")
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-video-capture={camera}"])
        yield chromium
        chromium.close()


_HIDE_MEDIA = """() => {
    for (const el of document.querySelectorAll('img, video, canvas')) {
        const r = el.getBoundingClientRect();
        if (r.width < 8 || r.height < 8) continue;
        const box = document.createElement('div');
        box.className = 'screenshot-redaction';
        box.textContent = 'face hidden: third-party sample';
        Object.assign(box.style, {position: 'absolute', left: `${r.left + scrollX}px`, top: `${r.top + scrollY}px`,
            width: `${r.width}px`, height: `${r.height}px`, background: '#8a8f98', color: '#fff', zIndex: 9999,
            display: 'flex', alignItems: 'center', justifyContent: 'center', font: '12px sans-serif',
            textAlign: 'center'});
        document.body.appendChild(box);
    }
}"""


def _screenshot(page, folder: Path, name: str) -> None:
    """Save NAME.png as the page shows it, and NAME-redacted.png with every picture and video covered.

    The sample faces are third-party media: only the redacted screenshots may be committed (docs/call.md).
    """
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)
    page.evaluate(_HIDE_MEDIA)
    page.screenshot(path=str(folder / f"{name}-redacted.png"), full_page=True)
    page.evaluate("() => document.querySelectorAll('.screenshot-redaction').forEach(el => el.remove())")
    print(f"screenshot: {folder / name}.png")


def _renders(page) -> int:
    return int(page.get_attribute("#photo-view", "data-renders") or 0)


@pytest.mark.slow  # .ci/run installs chromium and playwright for the slow set
def test_animate_page_in_a_browser(live_server, browser, samples, screenshots, tmp_path):
    from PIL import Image

    clip = tmp_path / "driving.mp4"
    write_video(clip, read_video(samples.franck, max_frames=40)[0], 24)
    gray = tmp_path / "gray.png"
    Image.fromarray(np.full((120, 120, 3), 128, np.uint8)).save(gray)
    page = browser.new_page(viewport={"width": 1100, "height": 1300}, accept_downloads=True)
    page.goto(live_server.url + "/")
    page.set_input_files("#photo-file", str(gray))  # no face: a clear message, and the page goes on
    page.wait_for_function("document.getElementById('photo-status').className === 'error'")
    assert "no face found in gray.png" in page.text_content("#photo-status")
    page.set_input_files("#photo-file", str(samples.held_out_stills()[0]))
    page.wait_for_function("Number(document.getElementById('photo-view').dataset.renders) >= 1", timeout=60_000)
    times = []
    for yaw in (15, -15, 25):  # moving a slider re-renders the still
        before = _renders(page)
        page.eval_on_selector("#yaw", f"el => {{ el.value = {yaw}; el.dispatchEvent(new Event('input')); }}")
        page.wait_for_function(f"Number(document.getElementById('photo-view').dataset.renders) > {before}")
        times.append(int(page.get_attribute("#photo-view", "data-ms")))
    print(f"free view re-render in the page: {times} ms")
    assert min(times) < 1500, times
    page.set_input_files("#driving-file", str(clip))
    page.click("#animate-button")
    page.wait_for_selector("#results:not([hidden])", timeout=240_000)
    assert page.get_attribute("#results", "data-frames") == "40"
    with page.expect_download() as download:
        page.click("#download")
    got = tmp_path / "got.mp4"
    download.value.save_as(got)
    frames, fps = read_video(got)
    assert frames.shape == (40, 128, 128, 3) and fps == pytest.approx(24)
    page.wait_for_function("document.getElementById('strip').naturalWidth > 0")
    # the browser itself decodes both videos (H.264 in .mp4)
    page.wait_for_function("['result-video', 'side-video'].every(id => document.getElementById(id).readyState >= 2)")
    _screenshot(page, screenshots, "animate")


def _wait_stats(server: LiveServer, peer: str, done, timeout: float, what: str) -> dict:
    end = time.monotonic() + timeout
    stats = {}
    while time.monotonic() < end:
        stats = server.get(f"/api/call/{peer}/stats")
        if done(stats):
            return stats
        time.sleep(0.5)
    raise AssertionError(f"{what} did not happen in {timeout:.0f} s: {stats}")


def _received_frame(page) -> np.ndarray:
    """The synthesized video the page shows, grabbed from its <video> element as RGB."""
    import base64
    import io

    from PIL import Image

    url = page.evaluate("""() => {
        const v = document.getElementById('remote');
        const c = document.createElement('canvas');
        c.width = v.videoWidth; c.height = v.videoHeight;
        c.getContext('2d').drawImage(v, 0, 0);
        return c.toDataURL('image/png');
    }""")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB"))


def _start_call(browser, server: LiveServer, room: str = "default"):
    page = browser.new_context(viewport={"width": 1100, "height": 1000}).new_page()
    page.goto(server.url + "/call")
    page.fill("#room", room)
    page.click("#start")
    page.wait_for_function("document.body.dataset.peer", timeout=60_000)
    return page, page.evaluate("document.body.dataset.peer")


def _shown(stats: dict) -> int:
    return stats["receiving"].get("receiver", {}).get("frames", 0)


@pytest.mark.slow
def test_live_call_in_a_browser(live_server, browser, screenshots):
    from facevid2vid.face.detect import detect_faces

    page, peer = _start_call(browser, live_server)
    start = time.monotonic()
    stats = _wait_stats(live_server, peer, lambda s: _shown(s) >= 20, 180, "20 synthesized frames")
    print(f"20 frames shown {time.monotonic() - start:.1f} s after the call started")
    assert stats["receiving_from"] == "self" and stats["parties"] == 1
    page.wait_for_function("document.getElementById('remote').videoWidth >= 256", timeout=30_000)
    frame = _received_frame(page)
    faces = detect_faces(frame)
    assert frame.shape == (256, 256, 3) and faces, "no face in the received frame"
    # the page's kbps, computed in the page, against the bytes that went into the link
    page.wait_for_function("Number(document.getElementById('s-kbps').dataset.seq) > 0")
    shown = float(page.get_attribute("#s-kbps", "data-total"))
    snap = live_server.get(f"/api/call/{peer}/history?seq={page.get_attribute('#s-kbps', 'data-seq')}")
    sent = 8 * (snap["sender"]["header_bytes"] + snap["link"]["bytes"]) / snap["elapsed"] / 1000
    print(f"page: {shown:.2f} kbps; bytes into the link: {sent:.2f} kbps; figures: {stats['receiving']}")
    assert shown == pytest.approx(sent, rel=0.05)
    # the H.264 tile: the same crops through libx264 at the call's bitrate, shown beside the call
    page.check("#compare")
    page.wait_for_function("Number(document.getElementById('h264').dataset.frames || 0) >= 3", timeout=60_000)
    h264 = live_server.get(f"/api/call/{peer}/stats")["sending"]["h264"]
    print(f"H.264 tile: {h264}")
    assert h264["frames"] > 0 and h264["target_kbps"] > 0 and h264["psnr_db"] > 15
    page.wait_for_function("document.getElementById('s-h264').dataset.kbps > 0")
    _screenshot(page, screenshots, "call")
    # 10% packet loss: the receiver reports it, asks for key frames, and recovers
    page.eval_on_selector("#loss", "el => { el.value = 0.1; el.dispatchEvent(new Event('input'));"
                                   " el.dispatchEvent(new Event('change')); }")
    before = _shown(live_server.get(f"/api/call/{peer}/stats"))

    def recovered(s):
        r = s["receiving"]["receiver"]
        return r["recoveries"] >= 2 and _shown(s) >= before + 40 and r["synced"]

    lossy = _wait_stats(live_server, peer, recovered, 240, "recovery from 10% loss")
    link, receiver = lossy["sending"]["link"], lossy["receiving"]["receiver"]
    print(f"with 10% loss: {link}; {receiver}")
    assert link["loss"] == pytest.approx(0.1) and link["dropped"] + link["corrupted"] >= 2
    assert lossy["sending"]["sender"]["key_reasons"].get("requested", 0) >= 1
    _screenshot(page, screenshots, "call-loss")
    page.click("#hangup")
    _wait_for_gone(live_server, peer)


def _wait_for_gone(server: LiveServer, peer: str, timeout: float = 30) -> None:
    import urllib.error

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            server.get(f"/api/call/{peer}/stats")
        except urllib.error.HTTPError as exc:
            assert exc.code == 404
            return
        time.sleep(0.5)
    raise AssertionError(f"party {peer} was not removed")


@pytest.mark.slow
def test_a_second_tab_joins_as_the_other_party(live_server, browser, screenshots):
    first, a = _start_call(browser, live_server, room="pair")
    second, b = _start_call(browser, live_server, room="pair")
    for peer in (a, b):
        _wait_stats(live_server, peer, lambda s: s["receiving_from"] == "other" and _shown(s) >= 5, 240,
                    f"frames of the other party for {peer[:6]}")
    _screenshot(second, screenshots, "call-second-tab")
    first.close()  # the page goes: its party is removed, the other one is alone again
    _wait_for_gone(live_server, a)
    assert live_server.get(f"/api/call/{b}/stats")["parties"] == 1
    second.click("#hangup")
    _wait_for_gone(live_server, b)
