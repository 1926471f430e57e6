"""Photos for free view and animation: cropped once, their SourceEncoding cached, rendered on demand.

Moving a slider re-renders the still with ``Animator.render(source, source.motion, View(...))``:
one generator pass on the cached source (about half a second for the bundled 128 px model on
one CPU core), no re-encoding.
"""
from __future__ import annotations

import hashlib
import io
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facevid2vid.errors import InputError, NoFaceError
from facevid2vid.serve.uploads import UploadError, Workspace, check_id, clean_message


@dataclass
class Photo:
    """An uploaded (or sample) photo, ready to render."""

    id: str
    name: str  # shown in the page
    crop: np.ndarray  # uint8 (S, S, 3): the face crop the model sees
    source: object  # its SourceEncoding
    folder: Path | None  # its upload folder (None for samples)


def sample_stills() -> dict[str, Path]:
    """The held-out stills already in the sample cache, by name (nothing is downloaded)."""
    from facevid2vid.data.fetch import HELD_OUT_STILLS, samples_dir

    folder = samples_dir() / "stills"
    return {name: folder / name for name in HELD_OUT_STILLS if (folder / name).is_file()}


def png_bytes(frame: np.ndarray) -> bytes:
    """A uint8 (H, W, 3) frame as PNG bytes (in memory)."""
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(frame).save(out, format="PNG", compress_level=1)
    return out.getvalue()


class PhotoStore:
    """Photos by id, the least recently used dropped (with its upload folder) past ``keep``."""

    def __init__(self, animator, workspace: Workspace, keep: int = 16):
        self.animator = animator
        self.workspace = workspace
        self.keep = max(1, keep)
        self.photos: OrderedDict[str, Photo] = OrderedDict()
        self.lock = threading.Lock()

    def add(self, path: Path, name: str, ident: str, folder: Path | None) -> Photo:
        """Crop the face of the image at ``path`` and encode it (UploadError naming ``name`` if it fails)."""
        from facevid2vid.pipeline import load_source_image
        from facevid2vid.video_io import to_tensor

        try:
            crop = load_source_image(path, self.animator.image_size, crop=True)
        except NoFaceError:
            raise UploadError(f"no face found in {name}: use a photo with one face, seen from the front") from None
        except InputError as exc:
            raise UploadError(clean_message(str(exc), path, name)) from None
        photo = Photo(ident, name, crop, self.animator.encode_source(to_tensor(crop)), folder)
        with self.lock:
            self.photos[ident] = photo
            while len(self.photos) > self.keep:
                _, old = self.photos.popitem(last=False)
                if old.folder is not None:
                    self.workspace.remove(old.folder)
        return photo

    def add_sample(self, name: str) -> Photo:
        stills = sample_stills()
        if name not in stills:
            raise UploadError(f"no sample photo {name!r}: choose one of {', '.join(stills) or '(none cached)'}")
        ident = hashlib.sha256(f"sample:{name}".encode()).hexdigest()[:32]
        with self.lock:
            if ident in self.photos:
                self.photos.move_to_end(ident)
                return self.photos[ident]
        return self.add(stills[name], name, ident, None)

    def get(self, ident: str) -> Photo:
        check_id(ident, "photo")
        with self.lock:
            photo = self.photos.get(ident)
            if photo is None:
                raise UploadError("unknown photo (it may have been dropped: upload it again)", status=404)
            self.photos.move_to_end(ident)
            return photo

    def render(self, ident: str, yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0,
               frontalize: bool = False) -> np.ndarray:
        """The photo re-posed: uint8 (S, S, 3)."""
        from facevid2vid.structures import View
        from facevid2vid.validation import check_angle
        from facevid2vid.video_io import to_uint8

        for what, value in (("yaw", yaw), ("pitch", pitch), ("roll", roll)):
            check_angle(value, what)
        photo = self.get(ident)
        view = View(yaw=float(yaw), pitch=float(pitch), roll=float(roll), frontalize=bool(frontalize))
        return to_uint8(self.animator.render(photo.source, photo.source.motion, view))[0]
