"""``facevid2vid serve``: a local web app (animate, free view) and a live video call over WebRTC.

- :mod:`.settings`: typed settings (server, upload limits, call, lossy link)
- :mod:`.session`: the call's server-side loop without any network: face tracker ->
  encoder -> lossy link -> stream decoder, per direction (testable on its own)
- :mod:`.uploads`, :mod:`.photos`, :mod:`.jobs`: uploads, cached sources for free view, animate jobs
- :mod:`.rtc`: the WebRTC glue (aiortc) around the session layer
- :mod:`.app`: the aiohttp application and its routes; ``static/`` holds the pages

Only :mod:`.settings` is imported by the command line at ``--help`` time; aiohttp and aiortc
(the ``serve`` extra) are imported when the server starts.
"""
