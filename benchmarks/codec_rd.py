"""Rate-quality benchmark: the neural codec against x264, x265 and SVT-AV1 (docs/codec.md).

On the validation frames of DATA.md (franck.mp4 frames 3600-4799, face-cropped to
256x256 at the native 24 fps; a model of another size encodes the same crops at its
own size and its output is upscaled for measurement) it sweeps our ``--quality``
settings and the standard codecs over a CRF range, measures kbps, PSNR, MS-SSIM, VMAF
and AKD for each point, and reports the Bjontegaard delta rate (BD-rate) of ours
against each codec per metric, our motion stream's bits per frame and the key frames'
share of the bytes.

    python benchmarks/codec_rd.py --checkpoint CKPT.safetensors --write-doc docs/codec.md

prints the tables, writes ``benchmarks/results/codec_rd.{json,md,png}`` and, with
``--write-doc``, replaces the results section of docs/codec.md (the plot then goes to
docs/codec_rd.png). ``--max-frames 120`` gives a quick run. This is a measurement
script, not a timed test.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1: errors only

import av  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from facevid2vid.cli._common import device_name  # noqa: E402
from facevid2vid.outputs import atomic_path, write_text  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DOC_BEGIN = "<!-- codec_rd:begin (written by benchmarks/codec_rd.py --write-doc; do not edit by hand) -->"
DOC_END = "<!-- codec_rd:end -->"

VALIDATION_START, VALIDATION_FRAMES = 3600, 1200  # DATA.md: franck frames 3600-4799

# standard codecs: (encoder, decoder, options, CRF values)
STANDARD = {
    "x264-medium": ("libx264", "h264", {"preset": "medium"}, (23, 29, 35, 41, 46, 51)),
    "x264-veryslow": ("libx264", "h264", {"preset": "veryslow"}, (23, 29, 35, 41, 46, 51)),
    "x265": ("libx265", "hevc", {"preset": "medium", "x265-params": "log-level=error:info=0"},
             (23, 29, 35, 41, 46, 51)),
    "svtav1": ("libsvtav1", "libdav1d", {"preset": "8"}, (30, 38, 45, 51, 57, 63)),
}

# our configurations: (frames per packet, max key frame interval in seconds, key frame threshold in dB)
OURS = {
    "ours": (1, 10.0, 4.0),  # live defaults: one packet per frame, a key frame at least every 10 s
    "ours-lowrate": (8, 0.0, 8.0),  # 8 frames per packet (320 ms latency), key frames only on large drift
}
QUALITIES = (10, 30, 50, 70, 90)
METRICS = (("psnr", "PSNR", "dB", True), ("ms_ssim", "MS-SSIM", "", True), ("vmaf", "VMAF", "", True),
           ("akd", "AKD", "px", False))


@dataclass
class Point:
    """One rate-quality point."""

    codec: str
    setting: str
    bytes: int
    kbps: float
    psnr: float | None = None
    ms_ssim: float | None = None
    vmaf: float | None = None
    akd: float | None = None
    akd_frames: int = 0
    extra: dict = field(default_factory=dict)  # ours: motion bits, key share, quantisation PSNR...


# ----------------------------------------------------------------------------- data


def load_reference(size: int, max_frames: int | None):
    """Validation frames face-cropped with one steady box.

    Returns the reference crops at ``size`` (what every codec is measured against and what our
    encoder takes, as ``facevid2vid encode`` gives it crops), the fps and the face presence (N,)
    of the face tracker's pass.
    """
    from facevid2vid.data.fetch import fetch_samples
    from facevid2vid.face.crop import crop_frames
    from facevid2vid.face.track import track_frames
    from facevid2vid.face.crop import DETECT_EVERY
    from facevid2vid.video_io import read_video

    n = VALIDATION_FRAMES if max_frames is None else min(max_frames, VALIDATION_FRAMES)
    raw, fps = read_video(fetch_samples().franck, start=VALIDATION_START, max_frames=n)
    track = track_frames(iter(raw), every=DETECT_EVERY)
    box = track.crop_box()
    if box is None:
        raise SystemExit("no face found in the franck validation frames")
    return crop_frames(raw, box, size), fps, track.present


# ----------------------------------------------------------------------------- metrics


class Meter:
    """PSNR, MS-SSIM and VMAF through facevid2vid.metrics; AKD against cached reference landmarks."""

    def __init__(self, reference: np.ndarray, vmaf: bool, akd_every: int):
        from facevid2vid.face.landmarks import landmarks_68
        from facevid2vid.metrics.evaluate import EvaluateOptions, Evaluator

        self.reference = reference
        self.evaluator = Evaluator(EvaluateOptions(faces=False, vmaf=vmaf, progress=False))
        self.akd_every = max(1, akd_every)
        self.landmarks = landmarks_68
        self.ref_landmarks = {i: landmarks_68(reference[i]) for i in range(0, len(reference), self.akd_every)}

    def __call__(self, point: Point, decoded: np.ndarray) -> Point:
        from facevid2vid.metrics.face import keypoint_distance

        if decoded.shape != self.reference.shape:
            raise RuntimeError(f"{point.codec} {point.setting}: decoded {decoded.shape}, expected "
                               f"{self.reference.shape}")
        result = self.evaluator.evaluate(iter(self.reference), iter(decoded), total=len(decoded))
        point.psnr, point.ms_ssim, point.vmaf = result.psnr, result.ms_ssim, result.vmaf
        distances = []
        for i, ref in self.ref_landmarks.items():
            gen = self.landmarks(decoded[i]) if ref is not None else None
            if gen is not None:
                distances.append(keypoint_distance(ref, gen))
        point.akd = float(np.mean(distances)) if distances else None
        point.akd_frames = len(distances)
        return point


# ----------------------------------------------------------------------------- codecs


def run_standard(name: str, crf: int, frames: np.ndarray, fps: float) -> tuple[Point, np.ndarray]:
    """Encode the frames with a standard codec in memory (4:2:0), decode them back."""
    encoder_name, decoder_name, options, _ = STANDARD[name]
    rate = Fraction(fps).limit_denominator(1001)
    ctx = av.CodecContext.create(encoder_name, "w")
    ctx.width, ctx.height = frames.shape[2], frames.shape[1]
    ctx.pix_fmt = "yuv420p"
    ctx.time_base = 1 / rate
    ctx.framerate = rate
    ctx.options = {**options, "crf": str(crf)}
    packets: list[bytes] = []
    for i, frame in enumerate(frames):
        vf = av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(format="yuv420p")
        vf.pts = i
        packets += [bytes(p) for p in ctx.encode(vf)]
    packets += [bytes(p) for p in ctx.encode(None)]
    size = sum(len(p) for p in packets)  # the elementary stream: no container overhead
    dec = av.CodecContext.create(decoder_name, "r")
    out = []
    for data in packets:
        out += [f.to_ndarray(format="rgb24") for f in dec.decode(av.Packet(data))]
    out += [f.to_ndarray(format="rgb24") for f in dec.decode(None)]
    kbps = 8 * size / (len(frames) / fps) / 1000
    return Point(name, f"crf {crf}", size, kbps), np.stack(out)


def run_ours(name: str, quality: int, animator, frames: np.ndarray, fps: float, present: np.ndarray,
             workdir: Path, size: int) -> tuple[Point, np.ndarray]:
    """Encode with our codec into a file, decode that file (the real receiver path), shown at ``size``.

    The encoder takes the crops at ``size`` and codes them at the model's size; the decoder
    gives them back at ``size`` (upscaled bicubic when the model is smaller, as ``decode`` does).
    """
    from facevid2vid.codec.decoder import decode_stream
    from facevid2vid.codec.encoder import Encoder, EncoderSettings

    per_packet, interval, threshold = OURS[name]
    settings = EncoderSettings(quality=quality, frames_per_packet=per_packet, max_keyframe_interval=interval,
                               keyframe_threshold=threshold, measure_quantization=True)
    encoder = Encoder(animator, fps, settings, frame_size=size)
    path = workdir / f"{name}-q{quality}.fv2v"
    with open(path, "wb") as f:
        f.write(encoder.header_bytes())
        for i in range(0, len(frames), 64):
            for packet in encoder.encode(frames[i:i + 64], present[i:i + 64]):
                f.write(packet)
        for packet in encoder.finish():
            f.write(packet)
    s = encoder.stats
    assert s.total_bytes == path.stat().st_size
    with open(path, "rb") as f:
        decoded = np.stack(list(decode_stream(f, animator)[1]))
    q = np.asarray(s.quantization_psnr) if s.quantization_psnr else np.array([np.nan])
    extra = {
        "key_frames": s.key_frames,
        "key_share": s.key_bytes / s.total_bytes,
        "key_bytes_per_image": s.key_image_bytes / max(1, s.key_frames),
        "motion_bits_per_frame": s.motion_bits_per_frame,
        "framing_bits_per_frame": s.framing_bits_per_frame,
        "motion_kbps": s.kbps(s.motion_payload_bytes + s.motion_framing_bytes),
        "quantization_psnr_mean": float(np.mean(np.minimum(q, 100))),
        "quantization_psnr_min": float(np.min(q)),
        "quantization_psnr_p05": float(np.percentile(q, 5)),
        "frames_per_packet": per_packet,
        "max_keyframe_interval": interval,
        "keyframe_threshold": threshold,
    }
    return Point(name, f"q {quality}", s.total_bytes, s.kbps(), extra=extra), decoded


# ----------------------------------------------------------------------------- Bjontegaard


def bd_rate(rate_ref, quality_ref, rate_test, quality_test) -> tuple[float | None, tuple[float, float] | None]:
    """Bjontegaard delta rate (VCEG-M33) of ``test`` against ``ref``, in percent, and the quality interval.

    Fits log(rate) as a cubic polynomial of quality for each curve (lower degree with
    fewer points) and averages the difference of the integrals over the quality range
    both curves cover. Negative: ``test`` needs fewer bits for the same quality. None
    when the curves share no quality range.
    """
    def clean(rates, qualities):
        pts = sorted((q, math.log(r)) for r, q in zip(rates, qualities) if q is not None and r > 0
                     and math.isfinite(q))
        return np.array([p[0] for p in pts]), np.array([p[1] for p in pts])

    qa, la = clean(rate_ref, quality_ref)
    qb, lb = clean(rate_test, quality_test)
    if len(qa) < 2 or len(qb) < 2:
        return None, None
    lo, hi = max(qa.min(), qb.min()), min(qa.max(), qb.max())
    if not hi > lo:
        return None, None

    def integral(q, logr):
        poly = np.polyint(np.polyfit(q, logr, min(3, len(q) - 1)))
        return np.polyval(poly, hi) - np.polyval(poly, lo)

    diff = (integral(qb, lb) - integral(qa, la)) / (hi - lo)
    return float((math.exp(diff) - 1) * 100), (float(lo), float(hi))


def bd_table(points: list[Point], ours: str) -> dict[str, dict[str, dict]]:
    """BD-rate of ``ours`` against every standard codec, per metric (AKD: lower is better, so negated)."""
    mine = [p for p in points if p.codec == ours]
    table = {}
    for codec in sorted({p.codec for p in points if p.codec in STANDARD}):
        theirs = [p for p in points if p.codec == codec]
        row = {}
        for key, _, _, higher in METRICS:
            sign = 1 if higher else -1

            def q(ps):
                return [None if getattr(p, key) is None else sign * getattr(p, key) for p in ps]

            value, interval = bd_rate([p.kbps for p in theirs], q(theirs), [p.kbps for p in mine], q(mine))
            if interval is not None and not higher:
                interval = (-interval[1], -interval[0])
            row[key] = {"bd_rate": value, "interval": interval}
        table[codec] = row
    return table


# ----------------------------------------------------------------------------- reporting


def fmt(value, digits=2) -> str:
    return "n/a" if value is None or (isinstance(value, float) and not math.isfinite(value)) else f"{value:.{digits}f}"


def points_table(points: list[Point]) -> str:
    lines = ["| codec | setting | kbps | PSNR dB | MS-SSIM | VMAF | AKD px |", "|---|---|---:|---:|---:|---:|---:|"]
    for p in points:
        lines.append(f"| {p.codec} | {p.setting} | {p.kbps:.2f} | {fmt(p.psnr)} | {fmt(p.ms_ssim, 4)} | "
                     f"{fmt(p.vmaf)} | {fmt(p.akd)} |")
    return "\n".join(lines)


def ours_table(points: list[Point]) -> str:
    lines = ["| config | setting | kbps | key frames | key share | bytes/key image | motion bits/frame | "
             "framing bits/frame | motion kbps | quantisation PSNR mean / 5th pct / min dB |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for p in points:
        if not p.extra:
            continue
        e = p.extra
        lines.append(f"| {p.codec} | {p.setting} | {p.kbps:.2f} | {e['key_frames']} | {100 * e['key_share']:.0f}% | "
                     f"{e['key_bytes_per_image']:.0f} | {e['motion_bits_per_frame']:.1f} | "
                     f"{e['framing_bits_per_frame']:.1f} | {e['motion_kbps']:.2f} | "
                     f"{e['quantization_psnr_mean']:.1f} / {e['quantization_psnr_p05']:.1f} / "
                     f"{e['quantization_psnr_min']:.1f} |")
    return "\n".join(lines)


def bd_markdown(tables: dict[str, dict[str, dict[str, dict]]]) -> str:
    lines = []
    for ours, table in tables.items():
        lines += [f"BD-rate of **{ours}** against each codec (negative: {ours} needs fewer bits for equal quality; "
                  "n/a: the quality ranges do not overlap):", "",
                  "| against | " + " | ".join(label for _, label, _, _ in METRICS) + " |",
                  "|---|" + "---:|" * len(METRICS)]
        for codec, row in table.items():
            cells = []
            for key, _, _, _ in METRICS:
                cell = row[key]
                if cell["bd_rate"] is None:
                    cells.append("n/a")
                else:
                    lo, hi = cell["interval"]
                    cells.append(f"{cell['bd_rate']:+.1f}% (over {lo:.3g}..{hi:.3g})")
            lines.append(f"| {codec} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def plot(points: list[Point], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 9))
    for ax, (key, label, unit, higher) in zip(axes.flat, METRICS):
        for codec in dict.fromkeys(p.codec for p in points):
            ps = sorted((p for p in points if p.codec == codec and getattr(p, key) is not None), key=lambda p: p.kbps)
            if ps:
                style = "o-" if codec.startswith("ours") else "s--"
                ax.plot([p.kbps for p in ps], [getattr(p, key) for p in ps], style, label=codec, markersize=4)
        ax.axvspan(1, 5, color="0.9", zorder=0, label="1-5 kbps")
        ax.set_xscale("log")
        ax.set_xlabel("kbps")
        ax.set_ylabel(f"{label} ({unit})" if unit else label)
        ax.set_title(f"{label} ({'higher' if higher else 'lower'} is better)")
        ax.grid(True, which="both", alpha=0.3)
    axes.flat[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


def write_doc(doc: Path, section: str) -> None:
    text = doc.read_text() if doc.exists() else ""
    block = f"{DOC_BEGIN}\n{section.rstrip()}\n{DOC_END}"
    if DOC_BEGIN in text and DOC_END in text:
        head, rest = text.split(DOC_BEGIN, 1)
        tail = rest.split(DOC_END, 1)[1]
        text = head + block + tail
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    write_text(doc, text)


# ----------------------------------------------------------------------------- main


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default=None, help="model (.safetensors); default: the bundled model")
    p.add_argument("--device", type=device_name, default="auto", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--size", type=int, default=256, help="crop size every codec is measured at (DATA.md: 256)")
    p.add_argument("--max-frames", type=int, default=None, help="use only the first N validation frames")
    p.add_argument("--qualities", default=",".join(map(str, QUALITIES)), help="our --quality values")
    p.add_argument("--ours", default=",".join(OURS), help=f"our configurations: {', '.join(OURS)}")
    p.add_argument("--codecs", default=",".join(STANDARD), help=f"standard codecs: {', '.join(STANDARD)}")
    p.add_argument("--crfs", default=None, help="CRF values for every standard codec (default: per codec)")
    p.add_argument("--no-vmaf", action="store_true")
    p.add_argument("--akd-every", type=int, default=1, help="AKD on every N-th frame (landmarks are slow)")
    p.add_argument("--out", default=str(RESULTS), help="folder for codec_rd.json/.md/.png")
    p.add_argument("--write-doc", default=None, metavar="DOC", help="replace the results section of this file")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", 0)) or max(1, min(4, os.cpu_count() or 1)))
    from facevid2vid.checkpoint import model_fingerprint
    from facevid2vid.pipeline import load_animator

    started = time.time()
    animator = load_animator(args.checkpoint, args.device)
    size, model_size = args.size, animator.image_size
    frames, fps, present = load_reference(size, args.max_frames)
    print(f"{len(frames)} validation frames, {size}x{size} (model {model_size}x{model_size}), {fps:g} fps; "
          f"face found in {present.mean():.0%}", file=sys.stderr)
    meter = Meter(frames, vmaf=not args.no_vmaf, akd_every=args.akd_every)
    points: list[Point] = []
    qualities = [int(q) for q in args.qualities.split(",") if q]
    ours = [c for c in args.ours.split(",") if c]
    with tempfile.TemporaryDirectory(prefix="codec_rd-") as tmp:
        for name in ours:
            if name not in OURS:
                raise SystemExit(f"unknown configuration {name!r}; choose from {', '.join(OURS)}")
            for quality in qualities:
                t0 = time.time()
                point, decoded = run_ours(name, quality, animator, frames, fps, present, Path(tmp), size)
                points.append(meter(point, decoded))
                print(f"{name} q{quality}: {point.kbps:.2f} kbps, VMAF {fmt(point.vmaf)}, PSNR {fmt(point.psnr)}, "
                      f"{point.extra['motion_bits_per_frame']:.1f} motion bits/frame "
                      f"({time.time() - t0:.0f} s)", file=sys.stderr)
    for name in [c for c in args.codecs.split(",") if c]:
        if name not in STANDARD:
            raise SystemExit(f"unknown codec {name!r}; choose from {', '.join(STANDARD)}")
        crfs = [int(c) for c in args.crfs.split(",")] if args.crfs else STANDARD[name][3]
        for crf in crfs:
            point, decoded = run_standard(name, crf, frames, fps)
            points.append(meter(point, decoded))
            print(f"{name} crf {crf}: {point.kbps:.2f} kbps, VMAF {fmt(point.vmaf)}, PSNR {fmt(point.psnr)}",
                  file=sys.stderr)

    tables = {name: bd_table(points, name) for name in ours}
    model = animator.model
    checkpoint = args.checkpoint or "bundled model"
    model_note = (f" (ours encodes the same crops at the model's {model_size}x{model_size} and its output is "
                  f"upscaled to {size}x{size}, bicubic)" if model_size != size else "")
    command = "python benchmarks/codec_rd.py " + " ".join(argv if argv is not None else sys.argv[1:])
    info = (f"Model: {checkpoint} (preset {model.cfg.name}, fingerprint {model_fingerprint(model).hex()}); "
            f"{len(frames)} frames of franck.mp4 from frame {VALIDATION_START}, face-cropped to {size}x{size} at "
            f"{fps:g} fps{model_note}; device {animator.device}; {time.strftime('%Y-%m-%d')}; run time "
            f"{(time.time() - started) / 60:.0f} min.")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # with --write-doc the plot goes next to the document, which links it
    png = Path(args.write_doc).parent / "codec_rd.png" if args.write_doc else out / "codec_rd.png"
    plot(points, png, f"franck validation, {size}x{size} @ {fps:g} fps, {len(frames)} frames")
    section = "\n\n".join([
        f"Command: `{command.strip()}`", info,
        f"![rate-quality curves]({png.name if args.write_doc else png})",
        "All points (kbps from the whole .fv2v file, or from the codec's elementary stream):",
        points_table(points), "Our streams:", ours_table(points), bd_markdown(tables)])
    write_text(out / "codec_rd.md", section + "\n")
    write_text(out / "codec_rd.json", json.dumps({"info": info, "points": [asdict(p) for p in points],
                                                  "bd_rate": tables}, indent=1))
    if args.write_doc:
        write_doc(Path(args.write_doc), section)
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
