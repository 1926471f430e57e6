"""`facevid2vid decode`: rebuild a video from a .fv2v stream."""
from __future__ import annotations

from facevid2vid.cli._common import add_model_args, int_range
from facevid2vid.outputs import VIDEO_OUTPUT_HELP


def register(sub) -> None:
    p = sub.add_parser("decode", help="rebuild a video from a .fv2v neural codec stream",
                       description="Decode key frames, synthesize every other frame from its motion. The whole "
                                   "stream is checked first; a corrupt one is refused with the byte or packet "
                                   "where it goes wrong.")
    p.add_argument("--input", required=True, metavar="IN.fv2v")
    p.add_argument("--output", required=True, metavar="OUT.mp4", help=VIDEO_OUTPUT_HELP)
    # the bounds of a frame size in the stream header (codec.bitstream; tests/test_cli_defaults.py)
    p.add_argument("--size", type=int_range(16, 1024), default=None, metavar="N",
                   help="output frame size in pixels (default: the size of the encoded input, recorded in the stream)")
    add_model_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from facevid2vid.pipeline import decode_file

    result = decode_file(args.input, args.output, checkpoint=args.checkpoint, device=args.device, size=args.size)
    print(f"decode: wrote {result.output} ({result.num_frames} frames, {result.num_key_frames} key frames, "
          f"{result.fps:g} fps) in {result.seconds:.1f} s")
    return 0
