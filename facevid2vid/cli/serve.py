"""`facevid2vid serve`: the web app (animate, free view) and the live video call, on this machine."""
from __future__ import annotations

from facevid2vid.cli._common import OptionTable, add_model_args, int_range

SERVE = OptionTable("facevid2vid.serve.settings:ServeSettings",
                    {"host": "host", "port": "port", "checkpoint": "checkpoint",
                     "call_checkpoint": "call_checkpoint", "device": "device"},
                    # server limits and call tuning: defaults in facevid2vid/serve/settings.py
                    not_on_cli=frozenset({"limits", "call", "max_parties", "max_rooms"}))
OPTION_TABLES = (SERVE,)


def register(sub) -> None:
    p = sub.add_parser("serve", help="web app: animate and free-view photos, and a live video call (WebRTC)",
                       description="Serve the pages at http://HOST:PORT/ (animate, free view) and /call (a live "
                                   "call through the neural codec). Needs the serve extra: pip install "
                                   "'facevid2vid[serve]'. See docs/call.md.")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 opens it to the "
                        "network, without any login)")
    p.add_argument("--port", type=int_range(0, 65535), default=7860, help="TCP port (default 7860)")
    add_model_args(p)
    p.add_argument("--call-checkpoint", metavar="FILE", default=None,
                   help="the live call's model (default: --checkpoint when given, else the bundled real-time "
                        "model realtime-thin-128, docs/call.md)")
    p.set_defaults(func=run)


def run(args) -> int:
    from facevid2vid.errors import InputError

    try:
        from facevid2vid.serve.app import serve
    except ImportError as exc:
        raise InputError(f"the server needs {exc.name or 'aiohttp and aiortc'}: pip install "
                         f"'facevid2vid[serve]' (aiohttp, aiortc)") from None
    serve(SERVE.build(args))
    return 0
