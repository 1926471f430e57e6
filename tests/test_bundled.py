"""The shipped checkpoint: it loads, and reconstructs real validation frames better than the no-motion baseline."""
import numpy as np
import torch

from facevid2vid.checkpoint import default_checkpoint, load_checkpoint
from facevid2vid.data.fetch import VALIDATION_SPLIT
from facevid2vid.inference import Animator
from facevid2vid.metrics.image import l1_error, psnr
from facevid2vid.pipeline import load_driving_frames
from facevid2vid.video_io import to_tensor


def test_bundled_checkpoint_beats_no_motion_baseline(samples):
    path = default_checkpoint()
    assert path is not None and path.exists(), "the bundled checkpoint is missing from the package"
    model = load_checkpoint(path)
    start = VALIDATION_SPLIT[0].start
    frames, _ = load_driving_frames(samples.franck, model.cfg.image_size, start=start, max_frames=1200)
    # 16 frames spread over the validation stretch, not the source frame itself (trivial for the baseline)
    picked = to_tensor(frames[np.arange(37, 1200, 75)])
    animator = Animator(model, batch_size=16)
    animator.set_source(to_tensor(frames[0]))
    with torch.inference_mode():
        generated = animator.animate(picked, mode="absolute")
    baseline = to_tensor(frames[0]).expand_as(picked)
    assert l1_error(generated, picked).mean() < l1_error(baseline, picked).mean()
    assert psnr(generated, picked).mean() > psnr(baseline, picked).mean()
