"""What the converter parity tests share: fixture scripts, stored arrays, `animate` runs, refused pickles."""
from __future__ import annotations

import importlib.util
import pickle
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import torch

from facevid2vid.cli import main as cli

ROOT = Path(__file__).resolve().parents[1]


def fixture_script(name: str) -> ModuleType:
    """scripts/fixtures/<name>.py, imported as ``name`` (the recipe half needs no reference code)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / "fixtures" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(name, module)
    spec.loader.exec_module(module)
    return module


def npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def to_images(frames: np.ndarray) -> torch.Tensor:
    """uint8 (N, S, S, 3) -> float (N, 3, S, S) in [0, 1]."""
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0


def max_diff(ours: torch.Tensor, theirs: np.ndarray) -> float:
    return float((ours.detach().float() - torch.from_numpy(theirs)).abs().max())


def image_diff(frames: np.ndarray, expected: np.ndarray) -> tuple[int, float]:
    """(max, mean) absolute difference of two uint8 frame stacks of one shape."""
    assert frames.shape == expected.shape
    diff = np.abs(frames.astype(int) - expected.astype(int))
    return int(diff.max()), float(diff.mean())


def animate_cli(checkpoint: Path, source: np.ndarray, driving, mode: str, folder: Path) -> np.ndarray:
    """``facevid2vid animate --no-crop`` of ``source`` driven by ``driving`` (a lossless video), as PNG frames."""
    from facevid2vid.video_io import read_image, write_image, write_video

    folder.mkdir(parents=True, exist_ok=True)
    source_file = write_image(folder / "source.png", source)
    driving_file = write_video(folder / "driving.mov", list(driving), 25, codec="png", crf=None, pix_fmt="rgb24")
    out = folder / mode
    assert cli(["animate", "--source", str(source_file), "--driving", str(driving_file),
                "--output", str(out / "%05d.png"), "--mode", mode, "--no-crop", "--checkpoint", str(checkpoint),
                "--device", "cpu"]) == 0
    return np.stack([read_image(p) for p in sorted(out.glob("*.png"))])


class Boom:
    """Unpickling this creates ``marker``: proof that code ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def check_pickle_refused_unrun(tmp_path: Path, capsys, source: str, filename: str, networks: tuple[str, ...]):
    """``convert --from source`` of a pickle that would run code: refused in one line, nothing run or written."""
    marker, bad, out = tmp_path / "ran", tmp_path / filename, tmp_path / "out.safetensors"
    with open(bad, "wb") as f:
        pickle.dump({"generator": Boom(marker), **{name: {} for name in networks}}, f)
    assert cli(["convert", "--from", source, str(bad), "--output", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "refused" in err and filename in err, err
    assert not marker.exists() and not out.exists()
