"""`facevid2vid encode`: compress a face video into a .fv2v stream (key frames + motion)."""
from __future__ import annotations

from facevid2vid.cli._common import (SMOOTHING, OptionTable, add_crop_arg, add_model_args, add_smoothing_args,
                                     int_range, nonnegative_float, positive_float, positive_int, smoothing_settings)

ENCODER = OptionTable(
    "facevid2vid.codec.encoder:EncoderSettings",
    {"quality": "quality", "keyframe_threshold": "keyframe_threshold",
     "max_keyframe_interval": "max_keyframe_interval", "min_keyframe_interval": "min_keyframe_interval",
     "keyframe_codec": "keyframe_codec",
     "frames_per_packet": "frames_per_packet", "drift_check_every": "drift_check_every"},
    elsewhere={"smoothing": "smooth"},  # SMOOTHING
    # library knobs: tuning and measurement (benchmarks/codec_rd.py), not for users
    not_on_cli=frozenset({"keyframe_quality", "hysteresis", "steps", "measure_quantization", "keep_reconstruction"}))
OPTION_TABLES = (ENCODER, SMOOTHING)


def register(sub) -> None:
    p = sub.add_parser("encode", help="compress a face video into a .fv2v neural codec stream",
                       description="Send a key frame, then per frame only head pose and expression; a new key "
                                   "frame when the receiver's synthesis drifts, the face is lost, or at the "
                                   "maximum interval. Format: docs/bitstream.md.")
    p.add_argument("--input", required=True, metavar="VIDEO")
    p.add_argument("--output", required=True, metavar="OUT.fv2v")
    p.add_argument("--quality", type=int_range(1, 100), default=50, metavar="1..100",
                   help="key frame quality and motion precision (default 50)")
    p.add_argument("--keyframe-threshold", type=positive_float, default=4.0, metavar="DB",
                   help="send a key frame when the synthesized frame's PSNR falls this many dB below the "
                        "key frame's own synthesis (default 4)")
    p.add_argument("--max-keyframe-interval", type=nonnegative_float, default=10.0, metavar="SECONDS",
                   help="longest time between key frames; 0: no limit (default 10)")
    p.add_argument("--min-keyframe-interval", type=nonnegative_float, default=0.0, metavar="SECONDS",
                   help="after a key frame, drift sends no new one for this long (caps the key frame rate; "
                        "default 0: no cap)")
    p.add_argument("--keyframe-codec", choices=["avif", "webp"], default="avif",
                   help="intra codec of key frames (default avif)")
    p.add_argument("--frames-per-packet", type=positive_int, default=1, metavar="N",
                   help="motion frames per packet: 1 for live use; more saves framing bytes (default 1)")
    p.add_argument("--drift-check-every", type=positive_int, default=1, metavar="N",
                   help="synthesize every N-th frame on the sender to check for drift: fewer generator passes, "
                        "drift found up to N-1 frames late (default 1)")
    add_smoothing_args(p)
    add_model_args(p)
    add_crop_arg(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from facevid2vid.pipeline import encode_file

    settings = ENCODER.build(args, smoothing=smoothing_settings(args))
    result = encode_file(args.input, args.output, checkpoint=args.checkpoint, settings=settings, crop=args.crop,
                         device=args.device, progress=True)
    print(f"encode: wrote {result.output} in {result.seconds:.1f} s")
    print(result.stats.summary())
    return 0
