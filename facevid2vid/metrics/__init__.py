"""Evaluation metrics and the protocol runner (definitions in docs/metrics.md).

- ``image``: L1, PSNR, SSIM, MS-SSIM (pytorch_msssim);
- ``face``: AKD, AED, identity distance to a source, head-pose error (dlib);
- ``vmaf``: VMAF via imageio-ffmpeg's libvmaf;
- ``learned`` (+ ``inception``): LPIPS and FID, only from user-supplied weights;
- ``evaluate``: two aligned videos -> one table (``facevid2vid evaluate``);
- ``benchmark``: reconstruction / redirect protocol with a no-motion baseline
  (``facevid2vid benchmark``).

Submodules are imported on demand so that ``import facevid2vid.metrics`` stays light.
"""
