"""Pixel metrics between aligned frames: L1, PSNR, SSIM and MS-SSIM.

Images are float tensors (B, 3, H, W), RGB in [0, 1]. Every function returns
one value per image (B,) so that callers can average over a whole video
however it was split into batches. SSIM and MS-SSIM come from the maintained
``pytorch_msssim`` library (Gaussian window 11, sigma 1.5, K = (0.01, 0.03),
averaged over the three RGB channels); this module only picks their settings.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from pytorch_msssim import ms_ssim as _ms_ssim
from pytorch_msssim import ssim as _ssim

from facevid2vid.errors import InputError

# PSNR of identical images is infinite; per frame it is capped here (MSE floor 1e-10).
PSNR_MAX_DB = 100.0
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
# pytorch_msssim asserts min(H, W) > (window - 1) * 2**4 (its 4 downsamplings).
MS_SSIM_DOWNSAMPLINGS = 4


def _check_pair(reference: torch.Tensor, generated: torch.Tensor) -> None:
    if reference.shape != generated.shape:
        raise InputError(f"image batches differ in shape: {tuple(reference.shape)} vs {tuple(generated.shape)}")
    if reference.dim() != 4 or reference.shape[1] != 3:
        raise InputError(f"expected images (B, 3, H, W), got {tuple(reference.shape)}")


def l1_error(reference: torch.Tensor, generated: torch.Tensor) -> torch.Tensor:
    """Mean absolute error per image over pixels and channels, values in [0, 1]. -> (B,)"""
    _check_pair(reference, generated)
    return (reference.float() - generated.float()).abs().flatten(1).mean(1)


def mse(reference: torch.Tensor, generated: torch.Tensor) -> torch.Tensor:
    """Mean squared error per image. -> (B,)"""
    _check_pair(reference, generated)
    return (reference.float() - generated.float()).pow(2).flatten(1).mean(1)


def psnr(reference: torch.Tensor, generated: torch.Tensor) -> torch.Tensor:
    """PSNR in dB per image, peak 1.0: 10 log10(1 / MSE), capped at PSNR_MAX_DB. -> (B,)"""
    err = mse(reference, generated).double().clamp_min(10 ** (-PSNR_MAX_DB / 10))
    return (-10.0 * torch.log10(err)).float()


def ssim(reference: torch.Tensor, generated: torch.Tensor) -> torch.Tensor:
    """SSIM per image (pytorch_msssim, data range 1, window 11, sigma 1.5). -> (B,)"""
    _check_pair(reference, generated)
    if min(reference.shape[-2:]) < SSIM_WINDOW:
        raise InputError(f"SSIM needs frames of at least {SSIM_WINDOW} px, got {tuple(reference.shape[-2:])}")
    return _ssim(reference.float(), generated.float(), data_range=1.0, size_average=False,
                 win_size=SSIM_WINDOW, win_sigma=SSIM_SIGMA)


@dataclass(frozen=True)
class MsSsimSettings:
    """Window used for MS-SSIM at a given frame size (5 scales, the standard weights)."""

    window: int

    @property
    def standard(self) -> bool:
        return self.window == SSIM_WINDOW


def ms_ssim_settings(height: int, width: int) -> MsSsimSettings | None:
    """The largest odd window <= 11 that pytorch_msssim accepts for this size, or None.

    MS-SSIM filters each of its 5 scales with the window, so the library requires
    min(H, W) > (window - 1) * 16. Frames of 161 px and more use the standard
    window 11; smaller frames (e.g. 128 px) keep the 5 scales and standard weights
    and shrink the window (sigma stays 1.5). At 32 px and below no window of 3 or more fits.
    """
    side = min(height, width)
    for window in range(SSIM_WINDOW, 2, -2):
        if side > (window - 1) * 2 ** MS_SSIM_DOWNSAMPLINGS:
            return MsSsimSettings(window)
    return None


def ms_ssim(reference: torch.Tensor, generated: torch.Tensor) -> torch.Tensor:
    """MS-SSIM per image (pytorch_msssim, 5 scales, window from ms_ssim_settings). -> (B,)"""
    _check_pair(reference, generated)
    settings = ms_ssim_settings(*reference.shape[-2:])
    if settings is None:
        raise InputError(f"MS-SSIM needs frames larger than 32 px, got {tuple(reference.shape[-2:])}")
    return _ms_ssim(reference.float(), generated.float(), data_range=1.0, size_average=False,
                    win_size=settings.window, win_sigma=SSIM_SIGMA)
