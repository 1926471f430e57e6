"""The training loop: one process or many under ``torchrun`` (DistributedDataParallel).

Run directory::

    RUN_DIR/config.yaml                                  the TrainConfig of the run
    RUN_DIR/train.log                                    what was used (losses, teacher, data) and progress
    RUN_DIR/tb/                                          TensorBoard scalars and image grids
    RUN_DIR/checkpoints/step_XXXXXXXX.safetensors        weights (F, L, H, M, G, D); ``animate`` loads it
    RUN_DIR/checkpoints/step_XXXXXXXX.state.safetensors  optimizers, schedules, step, RNG, data position
    RUN_DIR/checkpoints/latest.json                      the newest complete pair; ``--resume`` reads it

Every file is written to a temporary name and renamed, and ``latest.json`` is replaced only
after both files of a checkpoint exist, so a crash never leaves a half-written checkpoint
as the one to resume from.
"""
from __future__ import annotations

import json
import os
import random
import re
import signal
import threading
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from facevid2vid.checkpoint import load_checkpoint, save_checkpoint
from facevid2vid.config import TrainConfig, save_train_config
from facevid2vid.outputs import write_text
from facevid2vid.data.dataset import InfiniteShardedSampler, PairBatch, PairDataset, collate_pairs
from facevid2vid.errors import CheckpointError, InputError
from facevid2vid.models import FaceVid2Vid, MultiScaleDiscriminator
from facevid2vid.training import distributed as D
from facevid2vid.training.build import (PerceptionTerms, build_dataset, build_networks, build_objective,
                                        build_perception)
from facevid2vid.training.objective import DiscriminatorObjective, GeneratorResult
from facevid2vid.training.perceptual import PerceptualLoss
from facevid2vid.training.state import load_state, save_state
from facevid2vid.training.transforms import RandomWarp
from facevid2vid.training.visualize import training_grid

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

LATEST = "latest.json"
DIGEST_ENV = "FACEVID2VID_WRITE_DIGEST"  # when set, each rank writes its parameter digest at the end


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def lr_factor(step: int, milestones, gamma: float, warmup: int = 0) -> float:
    """Step decay: multiply by ``gamma`` at each milestone already passed; a linear rise over ``warmup`` steps."""
    rise = min(1.0, (step + 1) / warmup) if warmup else 1.0
    return rise * gamma ** sum(1 for m in milestones if step >= m)


class RunLog:
    """Lines to RUN_DIR/train.log and the console, from rank 0 only."""

    def __init__(self, path: Path | None, console: bool):
        self.path = path
        self.console = console

    def __call__(self, msg: str) -> None:
        if self.path is not None:
            with open(self.path, "a") as f:
                f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {msg}\n")
        if self.console:
            tqdm.write(msg)


class Trainer:
    """Builds models, data, optimizers; ``train_step(batch)`` does one G and one D update.

    Construction runs in steps: the process (device, process group), the run folder and log,
    then, after seeding, the data, the networks, the perception terms and the optimizers; then
    the weights are restored (``resume`` or ``init_from``), the objectives wrapped for DDP and
    the setup written to the log.
    """

    cfg: TrainConfig
    info: D.DistInfo
    device: torch.device
    output_dir: Path
    ckpt_dir: Path
    log: RunLog
    dataset: PairDataset
    model: FaceVid2Vid
    disc: MultiScaleDiscriminator | None  # None for families trained without a GAN (FOMM, Monkey-Net, X2Face)
    perceptual: nn.Module | None
    identity: nn.Module | None
    pose_teacher: nn.Module | None
    pose_teacher_name: str
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer | None  # None without a discriminator
    sched_g: torch.optim.lr_scheduler.LambdaLR
    sched_d: torch.optim.lr_scheduler.LambdaLR | None
    rng: torch.Generator  # per-rank randomness of the training step (equivariance warps)
    gen_obj: nn.Module  # GeneratorObjective, DDP-wrapped under torchrun
    disc_obj: nn.Module  # DiscriminatorObjective, likewise
    writer: SummaryWriter | None  # TensorBoard, rank 0 only
    progress: bool  # progress bar (rank 0 only)
    step: int  # optimizer steps done

    def __init__(self, cfg: TrainConfig, data_dir: str | Path, output_dir: str | Path, *,
                 device: str | None = None, resume: bool = False, init_from: str | Path | None = None,
                 progress: bool = True, console: bool = True):
        self.cfg = cfg
        self._join_processes(device)
        self._open_run_dir(Path(output_dir), progress, console)
        self.step = 0
        self._stop = False
        self._loaded_step: int | None = None  # step of the checkpoint this run resumed from
        self._last: tuple[PairBatch, GeneratorResult] | None = None  # the latest step, for image grids

        seed_everything(cfg.seed)  # identical initial weights on every rank (DDP also broadcasts rank 0's)
        self.dataset = build_dataset(cfg, data_dir)
        self.model, self.disc = build_networks(cfg, self.device, distributed=self.info.enabled)
        self._set_perception(build_perception(cfg, self.device))
        self._build_optimizers()
        self._restore(resume, init_from)
        self._wrap_objectives()
        self._open_writer()
        self._describe_setup(Path(data_dir))

    # ------------------------------------------------------------------ setup

    def _join_processes(self, device: str | None) -> None:
        """This process's rank and device; joins the torchrun group when there is one."""
        self.info = D.env_dist_info()
        self.device = D.pick_device(device, self.info)
        if self.device.type == "cpu":
            # denormal floats appear as training goes on and make CPU kernels many times slower
            torch.set_flush_denormal(True)
        D.init_process_group(self.info, self.device)

    def _open_run_dir(self, output_dir: Path, progress: bool, console: bool) -> None:
        """The run folder (rank 0 creates it) and the log; progress and log lines from rank 0 only."""
        self.output_dir = output_dir
        self.ckpt_dir = output_dir / "checkpoints"
        if self.info.is_main:
            self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        D.barrier()
        self.progress = progress and self.info.is_main
        self.log = RunLog(output_dir / "train.log" if self.info.is_main else None, console and self.info.is_main)

    def _set_perception(self, terms: PerceptionTerms) -> None:
        self.perceptual, self.identity = terms.perceptual, terms.identity
        self.pose_teacher, self.pose_teacher_name = terms.pose_teacher, terms.pose_teacher_name

    def _build_optimizers(self) -> None:
        """Adam for G and D with the step-decay schedule, and the per-rank step generator."""
        cfg = self.cfg
        self.opt_g = torch.optim.Adam(self.model.parameters(), lr=cfg.lr_generator, betas=tuple(cfg.betas))
        schedule = lambda s: lr_factor(s, cfg.lr_milestones, cfg.lr_gamma, cfg.lr_warmup_steps)  # noqa: E731
        self.sched_g = torch.optim.lr_scheduler.LambdaLR(self.opt_g, schedule)
        self.opt_d = self.sched_d = None
        if self.disc is not None:
            self.opt_d = torch.optim.Adam(self.disc.parameters(), lr=cfg.lr_discriminator, betas=tuple(cfg.betas))
            self.sched_d = torch.optim.lr_scheduler.LambdaLR(self.opt_d, schedule)
        self.rng = torch.Generator().manual_seed(cfg.seed * 1000 + self.info.rank)

    def _restore(self, resume: bool, init_from: str | Path | None) -> None:
        """``resume`` continues this run's newest checkpoint (and wins); else ``init_from`` copies weights."""
        if not resume and self._holds_checkpoints():
            raise InputError(f"{self.output_dir} already holds checkpoints: pass --resume to continue, "
                             f"or choose another --output")
        resumed = self._resume() if resume else False
        if resumed and init_from is not None:
            self.log(f"--resume found a checkpoint: --init-from {init_from} is ignored")
        elif init_from is not None:
            self.init_from(init_from)

    def _wrap_objectives(self) -> None:
        """The generator and discriminator objectives, each in its own DDP wrapper under torchrun."""
        gen_obj = build_objective(self.cfg, self.model, self.disc, self.perceptual, self.identity, self.pose_teacher)
        disc_obj = None if self.disc is None else DiscriminatorObjective(self.disc, self.cfg)
        if self.info.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.gen_obj = DDP(gen_obj, device_ids=ids)
            self.disc_obj = None if disc_obj is None else DDP(disc_obj, device_ids=ids)
        else:
            self.gen_obj, self.disc_obj = gen_obj, disc_obj

    def _open_writer(self) -> None:
        """Rank 0 writes RUN_DIR/config.yaml and opens the TensorBoard writer."""
        self.writer = None
        if self.info.is_main:
            save_train_config(self.cfg, self.output_dir / "config.yaml")
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.output_dir / "tb"))

    def _describe_setup(self, data_dir: Path) -> None:
        cfg, w = self.cfg, self.cfg.loss
        frames = sum(c.num_frames for c in self.dataset.clips)
        amp = "bf16 autocast" if cfg.bf16 and self.device.type == "cuda" else "float32"
        self.log(f"model {cfg.model.name} ({cfg.model.image_size}px) on {self.device}, {amp}, "
                 f"world size {self.info.world_size}, batch {cfg.batch_size} per process")
        ds = self.dataset
        stills = (f"; {len(ds.still_idx)} still photos, still pairs {100 * ds.still_fraction:.0f}% of samples"
                  if ds.still_idx else "")
        self.log(f"data {data_dir}: {len(ds.video_idx)} video clips, {frames - len(ds.still_idx)} frames{stills}")
        if self.disc is None:  # a 2D family: its Objective holds its own losses
            objective = self.gen_obj.module if self.info.enabled else self.gen_obj
            self.log(f"losses: {getattr(objective, 'summary', type(objective).__name__)}")
            return
        self.log(self._reconstruction_summary())
        gan = (f"hinge GAN (weight {w.gan}) from step {cfg.gan_start_step}" if cfg.use_gan and self.disc is not None
               else "GAN off")
        self.log(f"{gan}; equivariance {w.equivariance}, keypoint prior {w.keypoint_prior}, "
                 f"deformation prior {w.deformation_prior}"
                 + (f", pixel-path price {w.pixel_path}" if w.pixel_path else ""))
        if self.pose_teacher is not None:
            signs = f" (signs {tuple(cfg.pose_teacher_signs)})" if cfg.pose_teacher_weights else ""
            self.log(f"head pose: {self.pose_teacher_name}{signs} on every frame, weight {w.head_pose}"
                     + (f"; free view: the source turned by up to +-{cfg.free_view_max_yaw:g} degrees of yaw, "
                        f"read by the same network, weight {w.free_view}" if w.free_view else ""))
        else:
            posed = sum(sum(p is not None for p in c.poses) for c in ds.clips)
            self.log(f"head pose: teacher poses from the index (dlib 68 landmarks + PnP), weight {w.head_pose}, "
                     f"{posed}/{frames} frames have one")

    def _reconstruction_summary(self) -> str:
        """The log line naming the reconstruction terms in use."""
        cfg, w = self.cfg, self.cfg.loss
        if isinstance(self.perceptual, PerceptualLoss):
            face = f" + face term ({cfg.face_weights})" if self.perceptual.face is not None else ""
            rec = f"perceptual: VGG19 pyramid from {cfg.vgg19_weights}{face} (weight {w.perceptual})"
        else:
            rec = "perceptual: no VGG19 file given -> "
            if self.perceptual is not None:
                rec += (f"{cfg.perceptual_network} feature distance on the pyramid {tuple(cfg.pyramid_scales)} "
                        f"(weight {w.perceptual}) + ")
            rec += (f"multi-scale L1 (weight {w.l1_pyramid}) + (MS-)SSIM (weight {w.ssim}) + "
                    f"discriminator feature matching (weight {w.feature_matching})")
        if self.identity is not None:
            rec += f"; face identity: 1 - cos of {cfg.identity_network} embeddings (weight {w.identity})"
        return rec

    # ------------------------------------------------------------------ one step

    def _teacher_batch(self, batch: PairBatch) -> PairBatch:
        """``batch`` on the device, with the network teacher's poses when there is one."""
        b = batch.to(self.device, non_blocking=True)
        if self.pose_teacher is None:
            return b
        return b.with_teacher_poses(self.pose_teacher(b.source), self.pose_teacher(b.driving))

    def train_step(self, batch: PairBatch) -> dict[str, float]:
        """One generator and one discriminator update on ``batch``; the losses by name, for logging."""
        cfg = self.cfg
        b = self._teacher_batch(batch)
        self.model.train()
        use_gan = self.disc is not None and cfg.use_gan and self.step >= cfg.gan_start_step
        if self.disc is not None:
            self.disc.train()
        warp = RandomWarp.sample(len(b), cfg.equivariance_affine_std, cfg.equivariance_tps_std,
                                 generator=self.rng, device=self.device)
        res, stats = self._generator_update(b, warp, use_gan)
        if use_gan:
            stats["discriminator"] = self._discriminator_update(b, res)
        self.sched_g.step()
        if self.sched_d is not None:
            with warnings.catch_warnings():  # before the GAN starts D has no update; its rate still follows the step
                warnings.filterwarnings("ignore", message=re.escape("Detected call of `lr_scheduler.step()` before"))
                self.sched_d.step()
        with torch.no_grad():
            stats["l1"] = float((res.prediction - b.driving).abs().mean())
        self.step += 1
        self._last = (b, res.detach())
        return stats

    def _view_yaw(self, n: int) -> tuple[torch.Tensor, ...]:
        """The free-view term's extra yaw (n,) degrees, uniform in +-free_view_max_yaw; () when the term is off."""
        if not self.cfg.loss.free_view:
            return ()
        yaw = (torch.rand(n, generator=self.rng) * 2 - 1) * self.cfg.free_view_max_yaw
        return (yaw.to(self.device),)

    def _generator_update(self, b: PairBatch, warp: RandomWarp,
                          use_gan: bool) -> tuple[GeneratorResult, dict[str, float]]:
        """One Adam step of F, L, H/Delta, M, G with D frozen; (result, loss values by name)."""
        if self.disc is not None:
            self.disc.requires_grad_(False)
        objective = self.gen_obj.module if self.info.enabled else self.gen_obj
        if hasattr(objective, "step"):  # family objectives with a curriculum (X2Face) follow the run's step
            objective.step = self.step
        res: GeneratorResult = self.gen_obj(b, warp, use_gan, *self._view_yaw(len(b)))
        loss_g = sum(res.losses.values())
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        if self.cfg.grad_clip:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.opt_g.step()
        names = list(res.losses) + ["generator"]
        values = torch.stack([v.detach().float() for v in res.losses.values()] + [loss_g.detach().float()])
        return res, dict(zip(names, values.tolist()))  # one device sync for all terms

    def _discriminator_update(self, b: PairBatch, res: GeneratorResult) -> float:
        """One Adam step of D on the real driving frames against the (detached) predictions."""
        self.disc.requires_grad_(True)
        loss_d = self.disc_obj(b.driving, res.prediction.detach(), res.kp_driving.detach())
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        if self.cfg.grad_clip:
            nn.utils.clip_grad_norm_(self.disc.parameters(), self.cfg.grad_clip)
        self.opt_d.step()
        return float(loss_d.detach())

    # ------------------------------------------------------------------ loop

    def batches(self) -> Iterator[PairBatch]:
        """Endless batches for this rank, starting where step ``self.step`` left off."""
        cfg = self.cfg
        sampler = InfiniteShardedSampler(len(self.dataset), seed=cfg.seed, rank=self.info.rank,
                                         world_size=self.info.world_size, start=self.step * cfg.batch_size)
        loader = torch.utils.data.DataLoader(
            self.dataset, batch_size=cfg.batch_size, sampler=sampler, num_workers=cfg.num_workers,
            drop_last=True, pin_memory=self.device.type == "cuda", collate_fn=collate_pairs,
            generator=torch.Generator().manual_seed(cfg.seed),  # leaves the global RNG alone
            worker_init_fn=_ignore_stop_signals, persistent_workers=False,
        )
        return iter(loader)

    def request_stop(self) -> None:
        """Finish the current step, save a checkpoint and leave :meth:`fit` (signal handlers call this)."""
        self._stop = True

    @contextmanager
    def _signals(self):
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum, frame):
            self.log(f"received {signal.Signals(signum).name}: saving a checkpoint after this step")
            self.request_stop()

        old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, h in old.items():
                signal.signal(s, h)

    def fit(self, max_steps: int | None = None) -> int:
        """Train until ``max_steps`` (or a stop request); checkpoints on the way and at the end."""
        cfg = self.cfg
        max_steps = cfg.max_steps if max_steps is None else max_steps
        images_per_step = cfg.batch_size * self.info.world_size
        saved_at = None
        with self._signals():
            it = self.batches() if self.step < max_steps else None
            bar = tqdm(total=max_steps, initial=self.step, disable=not self.progress, desc="train",
                       dynamic_ncols=True)
            t_last, step_last = time.perf_counter(), self.step
            started = t_last
            try:
                while self.step < max_steps:
                    stats = self.train_step(next(it))
                    now = time.perf_counter()
                    ips = images_per_step * (self.step - step_last) / max(now - t_last, 1e-9)
                    t_last, step_last = now, self.step
                    bar.update(1)
                    bar.set_postfix({"G": f"{stats['generator']:.3f}", "D": f"{stats.get('discriminator', 0):.3f}",
                                     "l1": f"{stats['l1']:.4f}", "img/s": f"{ips:.1f}"}, refresh=False)
                    self._log_step(stats, ips)
                    if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                        self.save()
                        saved_at = self.step
                    out_of_time = bool(cfg.max_minutes) and now - started > 60 * cfg.max_minutes
                    if D.any_rank(self._stop or out_of_time, self.device):
                        self.log(f"stopping at step {self.step} "
                                 + ("on request" if self._stop else f"after {cfg.max_minutes:g} minutes"))
                        break
            except KeyboardInterrupt:  # only when the handlers could not be installed
                self.log(f"interrupted at step {self.step}")
            finally:
                bar.close()
            if saved_at != self.step and self.step != self._loaded_step:  # same decision on every rank
                self.save()
        self._check_ranks_agree()
        if self.writer is not None:
            self.writer.flush()
        return self.step

    def _log_step(self, stats: dict[str, float], ips: float) -> None:
        cfg = self.cfg
        if self.writer is None:
            return
        if cfg.log_every and self.step % cfg.log_every == 0:
            for k, v in stats.items():
                self.writer.add_scalar(f"loss/{k}", v, self.step)
            self.writer.add_scalar("train/images_per_second", ips, self.step)
            self.writer.add_scalar("train/lr_generator", self.opt_g.param_groups[0]["lr"], self.step)
            self.log(f"step {self.step} " + " ".join(f"{k}={v:.4f}" for k, v in stats.items()) + f" img/s={ips:.1f}")
        if cfg.image_every and self.step % cfg.image_every == 0 and self._last is not None:
            b, res = self._last
            grid = training_grid(b.source, b.driving, res.prediction, res.kp_source, res.kp_driving)
            self.writer.add_image("source_driving_prediction", grid, self.step, dataformats="HWC")

    def _check_ranks_agree(self) -> None:
        """All ranks must hold the same weights; fail loudly if DDP let them drift."""
        digest = D.parameter_digest(*(m for m in (self.model, self.disc) if m is not None))
        if os.environ.get(DIGEST_ENV):
            write_text(self.output_dir / f"param_digest.rank{self.info.rank}.txt", digest + "\n")
        if self.info.enabled:
            digests = D.gather_strings(digest, self.device)
            if len(set(digests)) != 1:
                raise RuntimeError(f"ranks ended with different parameters: {digests}")
            self.log(f"all {len(digests)} ranks hold identical parameters ({digest[:12]})")

    # ------------------------------------------------------------------ checkpoints

    def latest_checkpoint(self) -> dict | None:
        """What ``latest.json`` names ({step, model, state}); None without one; CheckpointError if malformed."""
        path = self.ckpt_dir / LATEST
        if not path.is_file():
            return None
        try:
            entry = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise CheckpointError(f"{path} is malformed (not JSON)") from None
        names_ok = isinstance(entry, dict) and all(
            isinstance(entry.get(k), str) and entry[k] and Path(entry[k]).name == entry[k] for k in ("model", "state"))
        step = entry.get("step") if isinstance(entry, dict) else None
        if not names_ok or isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise CheckpointError(f"{path} is malformed (expected step, model and state of one checkpoint)")
        return entry

    def _step_files(self) -> dict[int, list[Path]]:
        """Step checkpoint files in the run, by step (model and state files, complete pairs or not)."""
        found: dict[int, list[Path]] = {}
        for path in self.ckpt_dir.glob("step_*.safetensors"):
            digits = path.name[len("step_"):].split(".")[0]
            if digits.isdigit():
                found.setdefault(int(digits), []).append(path)
        return found

    def _holds_checkpoints(self) -> bool:
        return (self.ckpt_dir / LATEST).exists() or bool(self._step_files())

    def _resume_candidates(self) -> tuple[list[dict], list[str], int | None]:
        """(checkpoint entries newest first, problems found so far, the step latest.json names)."""
        problems: list[str] = []
        try:
            latest = self.latest_checkpoint()
        except CheckpointError as exc:
            latest, problems = None, [str(exc)]
        entries = {step: {"step": step, "model": f"step_{step:08d}.safetensors",
                          "state": f"step_{step:08d}.state.safetensors"} for step in self._step_files()}
        if latest is not None:
            entries[latest["step"]] = latest
        return [entries[s] for s in sorted(entries, reverse=True)], problems, None if latest is None else latest["step"]

    def _resume(self) -> bool:
        """Continue from the newest usable checkpoint; False when the run has none at all.

        A malformed ``latest.json`` or a damaged pair falls back to the next older pair, with a
        message; step files newer than the one resumed from are renamed ``*.unusable`` so that
        nothing overwrites them. With checkpoints but none usable: CheckpointError (never step 0).
        """
        candidates, problems, named = self._resume_candidates()
        if not candidates and not problems:
            self.log(f"--resume: no checkpoint in {self.ckpt_dir}, starting from step 0")
            return False
        for entry in candidates:
            try:
                self.load(entry)
            except _OtherArchitecture:
                raise
            except CheckpointError as exc:
                problems.append(str(exc))
                continue
            if problems or entry["step"] != named:
                why = "; ".join(problems) or (f"{LATEST} names step {named}" if named is not None else f"no {LATEST}")
                self.log(f"--resume: {why}; resumed from the newest valid checkpoint, step {entry['step']}")
            self._set_aside_newer(entry["step"])
            return True
        raise CheckpointError(f"--resume: no usable checkpoint in {self.ckpt_dir} ({'; '.join(problems[:3])}); "
                              f"move the run folder away to start again from step 0")

    def _set_aside_newer(self, step: int) -> None:
        """Rename step files newer than ``step`` (unusable ones) to ``*.unusable``: kept, never overwritten."""
        D.barrier()
        newer = sorted(p for s, paths in self._step_files().items() if s > step for p in paths)
        if self.info.is_main:
            for path in newer:
                os.replace(path, path.with_name(path.name + ".unusable"))
        if newer:
            self.log(f"--resume: set aside unusable newer checkpoint files as *.unusable: "
                     f"{', '.join(p.name for p in newer)}")
        D.barrier()

    def _rng_state(self) -> dict:
        state = {"python": random.getstate(), "numpy": np.random.get_state(),
                 "torch": torch.get_rng_state(), "trainer": self.rng.get_state()}
        if self.device.type == "cuda":
            state["cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def _set_rng_state(self, state: dict) -> None:
        random.setstate(state["python"])
        kind, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
        torch.set_rng_state(state["torch"])
        self.rng.set_state(state["trainer"])
        if "cuda" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda"], self.device)

    def save(self) -> Path | None:
        """Checkpoint the current step (rank 0 writes; every rank contributes its RNG state)."""
        rngs = self._gather_rng_states()
        if not self.info.is_main:
            D.barrier()
            return None
        name = f"step_{self.step:08d}"
        model_path = self.ckpt_dir / f"{name}.safetensors"
        state_path = self.ckpt_dir / f"{name}.state.safetensors"
        meta = {"step": str(self.step), "train_config": json.dumps(self.cfg.to_dict())}
        save_checkpoint(model_path, self.model, discriminator=self.disc, metadata=meta)  # atomic
        save_state(state_path, {
            "step": self.step,
            "world_size": self.info.world_size,
            "opt_g": self.opt_g.state_dict(), "sched_g": self.sched_g.state_dict(),
            **({} if self.opt_d is None else {"opt_d": self.opt_d.state_dict(), "sched_d": self.sched_d.state_dict()}),
            "rng": rngs,
            "samples_per_rank": self.step * self.cfg.batch_size,
        })
        latest = {"step": self.step, "model": model_path.name, "state": state_path.name}
        write_text(self.ckpt_dir / LATEST, json.dumps(latest))
        self._prune(keep={model_path.name, state_path.name})
        self.log(f"checkpoint {model_path}")
        D.barrier()
        return model_path

    def _gather_rng_states(self) -> list[dict]:
        own = self._rng_state()
        if not self.info.enabled:
            return [own]
        import torch.distributed as dist

        out: list = [None] * self.info.world_size
        dist.all_gather_object(out, own)
        return out

    def _prune(self, keep: set[str]) -> None:
        n = self.cfg.keep_checkpoints
        if not n or n < 1:
            return
        models = sorted(p for p in self.ckpt_dir.glob("step_*.safetensors") if not p.name.endswith(".state.safetensors"))
        for old in models[:-n]:
            if old.name in keep:
                continue
            old.unlink(missing_ok=True)
            old.with_name(old.name.replace(".safetensors", ".state.safetensors")).unlink(missing_ok=True)

    def load(self, latest: dict) -> None:
        """Continue from a checkpoint of this run: weights, optimizers, schedules, step, RNG.

        Everything is checked first (checksums, finite weights, the state's structure and shapes);
        a damaged pair raises CheckpointError naming the file.
        """
        model_path = self.ckpt_dir / latest["model"]
        loaded = load_checkpoint(model_path, device="cpu", with_discriminator=self.disc is not None)
        model, disc = loaded if self.disc is not None else (loaded, None)
        if model.cfg.to_dict() != self.cfg.model.to_dict():
            raise _OtherArchitecture(f"{model_path} was trained with model config {model.cfg.name!r} "
                                     f"differing from this run's; use --init-from to start a new run from it")
        state_path = self.ckpt_dir / latest["state"]
        state = load_state(state_path)
        optimizers = {"opt_g": self.opt_g, **({} if self.opt_d is None else {"opt_d": self.opt_d})}
        _check_trainer_state(state_path, state, latest["step"], optimizers)
        try:
            self.opt_g.load_state_dict(state["opt_g"])
            self.sched_g.load_state_dict(state["sched_g"])
            if self.opt_d is not None:
                self.opt_d.load_state_dict(state["opt_d"])
                self.sched_d.load_state_dict(state["sched_d"])
            rngs = state["rng"]
            if len(rngs) == self.info.world_size:
                self._set_rng_state(rngs[self.info.rank])
            else:
                self.log(f"checkpoint made with {len(rngs)} processes, now {self.info.world_size}: RNG reseeded")
                seed_everything(self.cfg.seed + int(state["step"]))
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as exc:
            raise CheckpointError(f"{state_path}: the trainer state is damaged ({type(exc).__name__}: "
                                  f"{str(exc).strip().splitlines()[0] if str(exc).strip() else 'no detail'})") from None
        self.model.load_state_dict(model.state_dict())
        if disc is not None:
            self.disc.load_state_dict(disc.state_dict())
        self.step = int(state["step"])
        self._loaded_step = self.step
        self.log(f"resumed from {model_path} at step {self.step}")

    def init_from(self, path: str | Path) -> None:
        """Start from another run's weights, also at another resolution (the 256 -> 512 fine-tune)."""
        path = Path(path)
        try:
            src, src_disc = load_checkpoint(path, device="cpu", with_discriminator=True)
        except CheckpointError:
            src, src_disc = load_checkpoint(path, device="cpu"), None
        loaded, skipped = _copy_matching(self.model, src.state_dict())
        if src_disc is not None and self.disc is not None:
            d_loaded, d_skipped = _copy_matching(self.disc, src_disc.state_dict())
            loaded += d_loaded
            skipped += [f"D.{k}" for k in d_skipped]
        if loaded == 0:
            raise CheckpointError(f"--init-from {path}: no tensor matches this model ({self.cfg.model.name})")
        self.log(f"initialised from {path} ({src.cfg.name}, {src.cfg.image_size}px): {loaded} tensors"
                 + (f", skipped {len(skipped)} with other shapes: {', '.join(skipped[:8])}" if skipped else ""))


class _OtherArchitecture(CheckpointError):
    """The run's checkpoint was made for another model config: no fallback, the user must choose."""


def _check_trainer_state(path: Path, state, step: int, optimizers: dict) -> None:
    """CheckpointError unless ``state`` has the trainer's keys, the right step and optimizer shapes."""
    keys = ("step", "sched_g", "rng", *optimizers, *(f"sched_{name[4:]}" for name in optimizers if name != "opt_g"))
    if not isinstance(state, dict) or any(k not in state for k in keys):
        raise CheckpointError(f"{path}: not a complete trainer state (expected {', '.join(keys)})")
    if state["step"] != step:
        raise CheckpointError(f"{path}: holds step {state['step']!r}, its checkpoint is step {step}")
    if not isinstance(state["rng"], list) or not state["rng"] or not all(isinstance(r, dict) for r in state["rng"]):
        raise CheckpointError(f"{path}: the RNG states are damaged")
    for name, opt in optimizers.items():
        problem = _optimizer_state_problem(opt, state[name])
        if problem:
            raise CheckpointError(f"{path}: optimizer state {name} does not fit the model: {problem}")


def _optimizer_state_problem(opt: torch.optim.Optimizer, saved) -> str | None:
    """What is wrong with a saved optimizer state dict for ``opt`` (None when it fits)."""
    if not isinstance(saved, dict) or not isinstance(saved.get("state"), dict) or \
            not isinstance(saved.get("param_groups"), list):
        return "not an optimizer state"
    params = [p for group in opt.param_groups for p in group["params"]]
    if len(saved["param_groups"]) != len(opt.param_groups) or any(
            not isinstance(g, dict) or len(g.get("params", ())) != len(o["params"])
            for g, o in zip(saved["param_groups"], opt.param_groups)):
        return "parameter groups differ"
    for index, entry in saved["state"].items():
        if not isinstance(index, int) or not 0 <= index < len(params) or not isinstance(entry, dict):
            return f"entry {index!r} names no parameter"
        for key, value in entry.items():
            if isinstance(value, torch.Tensor) and value.dim() and value.shape != params[index].shape:
                return f"{key} of parameter {index} is {tuple(value.shape)}, expected {tuple(params[index].shape)}"
    return None


def _ignore_stop_signals(worker_id: int) -> None:
    """Loader workers leave Ctrl-C and SIGTERM to the main process, which saves a checkpoint first.

    Both reach every process of the group (a terminal's Ctrl-C, a scheduler's SIGTERM, ``pkill -f``): a worker
    that died of them would end the run with an error instead of a checkpoint. The main process stops the
    workers itself, and they leave when it does.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _copy_matching(module: nn.Module, state: dict[str, torch.Tensor]) -> tuple[int, list[str]]:
    """Copy tensors whose name and shape match; return (count copied, names skipped)."""
    own = module.state_dict()
    take = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    skipped = sorted(set(own) - set(take))
    module.load_state_dict(take, strict=False)
    return len(take), skipped
