"""The shipped checkpoints (the bundled model, the live call's real-time model): they load and hold the
figures of their docs (docs/model-card.md, docs/call.md); the bundled one beats the no-motion baseline."""
import re
from pathlib import Path

import numpy as np
import torch

from facevid2vid.checkpoint import default_checkpoint, load_checkpoint, realtime_checkpoint
from facevid2vid.data.fetch import VALIDATION_SPLIT
from facevid2vid.inference import Animator
from facevid2vid.metrics.image import l1_error, psnr
from facevid2vid.pipeline import load_driving_frames
from facevid2vid.video_io import to_tensor

DOCS = Path(__file__).resolve().parents[1] / "docs"
PSNR_TOLERANCE = 0.3  # dB: a 1 dB regression fails
L1_TOLERANCE = 0.05  # relative


def card_figures(doc: Path, row: str) -> tuple[float, float]:
    """(PSNR dB, L1) of a 'regression check' row of ``doc``."""
    m = re.search(rf"\| regression check: {re.escape(row)} \| ([\d.]+) dB \| ([\d.]+) \|", doc.read_text())
    assert m, f"{doc.name} has no regression-check row {row!r}"
    return float(m.group(1)), float(m.group(2))


def regression_figures(path: Path, franck: Path) -> dict[str, tuple[float, float]]:
    """(PSNR, L1) of the model at ``path`` and of the no-motion baseline on 16 validation frames spread over
    franck 3600-4799 (not the source frame itself, trivial for the baseline), first frame as the source."""
    model = load_checkpoint(path)
    start = VALIDATION_SPLIT[0].start
    frames, _ = load_driving_frames(franck, model.cfg.image_size, start=start, max_frames=1200)
    picked = to_tensor(frames[np.arange(37, 1200, 75)])
    animator = Animator(model, batch_size=16)
    with torch.inference_mode():
        generated = animator.animate(animator.encode_source(to_tensor(frames[0])), picked, mode="absolute")
    baseline = to_tensor(frames[0]).expand_as(picked)
    return {"model on 16 validation frames": (psnr(generated, picked).mean().item(),
                                              l1_error(generated, picked).mean().item()),
            "no-motion baseline": (psnr(baseline, picked).mean().item(), l1_error(baseline, picked).mean().item())}


def check_against(doc: Path, got: dict[str, tuple[float, float]], prefix: str = "") -> None:
    for row, (p, l1) in got.items():
        card_psnr, card_l1 = card_figures(doc, prefix + row)
        assert abs(p - card_psnr) <= PSNR_TOLERANCE, (row, p, card_psnr)
        assert abs(l1 - card_l1) <= L1_TOLERANCE * card_l1, (row, l1, card_l1)


def test_bundled_checkpoint_holds_its_model_card_figures(samples):
    path = default_checkpoint()
    assert path is not None and path.exists(), "the bundled checkpoint is missing from the package"
    got = regression_figures(path, samples.franck)
    assert got["model on 16 validation frames"][0] > got["no-motion baseline"][0]
    assert got["model on 16 validation frames"][1] < got["no-motion baseline"][1]
    check_against(DOCS / "model-card.md", got)


def test_real_time_checkpoint_holds_the_figures_of_docs_call(samples):
    path = realtime_checkpoint()
    assert path is not None and path.exists(), "the live call's real-time checkpoint is missing from the package"
    got = regression_figures(path, samples.franck)
    check_against(DOCS / "call.md", got, prefix="real-time model, ")
