"""The training loop: a :class:`Trainer` built from a config trains (AdamW with a warm-up
cosine schedule, optional EMA, data-parallel under torchrun), validates, checkpoints and
exports; :mod:`malleconv.training.run` drives it.

Resuming is exact: a checkpoint holds the model, optimiser, schedule, EMA, torch RNG and
step, and the batches of a step depend only on ``(seed, step, rank)``
(:class:`~malleconv.training.batches.StepBatches`).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..data.datasets import ImageFolderPatches
from ..models.blind import BlindMalleNet, noise_level_loss
from ..models.registry import save_model
from .batches import StepBatches
from .checkpoint import one_line, read_checkpoint
from .config import build_model
from .ema import EMA, recalibrate_batchnorm
from .finetune import freeze_submodules, warm_start
from .losses import make_loss
from .metrics_log import MetricsLog
from .schedule import warmup_cosine
from .validation import BLIND_VAL_KEYS, load_val_images, validate_blind, validate_white

__all__ = ["Trainer"]


class Trainer:
    """Trains a denoiser from a config dict (see :mod:`malleconv.training.config`)."""

    def __init__(
        self,
        cfg: dict,
        data: str | os.PathLike,
        out: str | os.PathLike,
        val: str | os.PathLike | None = None,
        progress: bool = True,
    ):
        self.cfg = cfg
        self.out = Path(out)
        self.progress = progress
        t = cfg["train"]
        if int(t.get("threads") or 0) > 0:
            torch.set_num_threads(int(t["threads"]))
        self.rank = int(os.environ.get("RANK", 0))
        self.world = int(os.environ.get("WORLD_SIZE", 1))
        # A process group this trainer creates (under torchrun) is its to destroy: close().
        self._owns_process_group = self.world > 1 and not torch.distributed.is_initialized()
        if self._owns_process_group:
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            torch.distributed.init_process_group(backend)
        self.device = torch.device(
            f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu"
        )
        torch.manual_seed(int(t["seed"]))
        d = cfg["data"]
        self.model = build_model(cfg)
        self.gray = (
            getattr(self.model, "config", None) is not None and self.model.config.in_channels == 1
        )
        self.channels_last = bool(t["channels_last"])
        self.model.to(self.device)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.patches = ImageFolderPatches(
            data,
            int(d["patch_size"]),
            gray=self.gray,
            skip_corrupt=bool(d["skip_corrupt"]),
            seed=int(t["seed"]),
        )
        holdout = int(d.get("val_holdout") or 0) if val is None else 0
        self.holdout_files: list[Path] = []
        if holdout:
            if holdout >= self.patches.num_images:
                raise ValueError(
                    f"data.val_holdout={holdout} leaves no training image in {data} "
                    f"({self.patches.num_images} images)"
                )
            self.holdout_files = self.patches.files[-holdout:]
            del self.patches.files[-holdout:]
            del self.patches.images[-holdout:]
        self.batches = StepBatches.from_config(self.patches, cfg, self.rank, self.world)
        if cfg["data"]["on_device"]:
            self.batches = self.batches.on_device(self.device)
        self.blind = isinstance(self.model, BlindMalleNet)
        # Before DDP wraps the model: it registers the parameters that train at construction.
        self.frozen = freeze_submodules(self.model, t["frozen"])
        self.net = self.model
        if self.world > 1:
            self.net = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        if bool(t.get("compile")):
            # Only the training forward: validation and export run self.model, uncompiled
            # (eval mode would compile a second graph).
            self.net = torch.compile(self.net)
        # Nothing the reconstruction loss could train: the denoiser's forward is skipped.
        self.estimate_only = (
            self.blind
            and self.world == 1
            and not any(p.requires_grad for p in self.model.denoiser.parameters())
            and (float(t["blind_prob"]) == 0 or bool(t["blind_detach"]))
        )
        o = cfg["optim"]
        self.opt = torch.optim.AdamW(
            [p for p in self.model.parameters() if p.requires_grad],
            lr=float(o["lr"]),
            betas=tuple(o["betas"]),
            weight_decay=float(o["weight_decay"]),
        )
        total = int(t["steps"])
        # Seconds of training so far (kept across resumes): drives a train.minutes budget.
        self.elapsed = 0.0
        self._clock = (time.monotonic(), 0.0)  # (start, elapsed then); fit() resets it
        self.budget_s = 60.0 * float(t["minutes"]) if t.get("minutes") else None
        progress = (lambda: self.elapsed / self.budget_s) if self.budget_s else None
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt,
            warmup_cosine(
                int(o["warmup_steps"]),
                total,
                float(o["min_lr"]) / float(o["lr"]),
                progress,
                from_start=bool(o["cosine_from_start"]),
            ),
        )
        self.ema = EMA(self.model, float(t["ema"])) if float(t["ema"] or 0) > 0 else None
        self.loss_fn = make_loss(t["loss"])
        self.soft_chroma = bool(t["soft_chroma"])
        self.step = 0
        self.val_images = load_val_images(
            [val] if val else self.holdout_files,
            int(t["val_max_images"]),
            int(t["val_crop"] or 0),
            self.gray,
        )
        self._stop = False

    def _train_mode(self) -> None:
        """Training mode, except for frozen modules: their BatchNorm statistics stay."""
        self.model.train()
        for module in self.frozen:
            module.eval()

    # ------------------------------------------------------------------ validation
    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Mean PSNR per validation sigma (EMA weights when enabled), standard protocol;
        for blind models also the figures of :func:`validate_blind`."""
        if not self.val_images:
            return {}
        model = self.model
        if self.ema is not None:
            model = build_model(self.cfg)
            self.ema.copy_to(model)
            model.to(self.device)
            self._recalibrate(model)
        model.eval()
        t = self.cfg["train"]
        res = validate_white(model, self.val_images, t["val_sigmas"], self.device)
        if self.blind:
            res.update(validate_blind(model, self.val_images, self.device))
        self._train_mode()
        return res

    # ------------------------------------------------------------------ checkpoints
    @property
    def ckpt_path(self) -> Path:
        return self.out / "checkpoints" / "last.pt"

    def save_checkpoint(self) -> None:
        if self.rank != 0:
            return
        self.ckpt_path.parent.mkdir(parents=True, exist_ok=True)
        state = {
            "step": self.step,
            "config": self.cfg,
            "model": self.model.state_dict(),
            "optim": self.opt.state_dict(),
            "sched": self.sched.state_dict(),
            "ema": self.ema.state if self.ema else None,
            "torch_rng": torch.get_rng_state(),
            "elapsed": self.elapsed,
            "map_variation": getattr(self.model, "map_variation", None),
        }
        tmp = self.ckpt_path.with_name("last.pt.tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.ckpt_path)

    def load_checkpoint(self, path: str | os.PathLike) -> None:
        """Continue from a checkpoint of this run's model (:meth:`save_checkpoint`); a
        ValueError naming the file when it is damaged or holds another model."""
        state = read_checkpoint(path, self.device, self.cfg["model"])
        try:
            self.model.load_state_dict(state["model"])
        except RuntimeError as err:
            raise ValueError(f"{path}: a checkpoint of another model than model.name "
                             f"{self.cfg['model']['name']!r} ({one_line(err)})") from None
        self.opt.load_state_dict(state["optim"])
        self.sched.load_state_dict(state["sched"])
        if self.ema is not None and state.get("ema") is not None:
            self.ema.state = {k: v.float() for k, v in state["ema"].items()}
        torch.set_rng_state(state["torch_rng"])
        self.step = int(state["step"])
        self.elapsed = float(state.get("elapsed", 0.0))
        if state.get("map_variation") is not None:
            self.model.map_variation = float(state["map_variation"])

    def _recalibrate(self, model: nn.Module, n: int = 32) -> None:
        # Fixed batches (independent of the current step) so that exports are reproducible.
        # Drawn like the training batches (same augmentations): the statistics of plain
        # full-size patches are not those the weights were trained with, and cost held-out
        # PSNR (research/bn_recalibration.py).
        recal = self.batches.reseeded(self.batches.seed + 1)
        recalibrate_batchnorm(model, (recal[i] for i in range(n)), self.device)

    def init_from(self, name_or_path) -> None:
        """Start from exported weights (:func:`~malleconv.training.finetune.warm_start`);
        the EMA, if any, starts from them too."""
        try:
            warm_start(self.model, name_or_path, self.cfg["model"].get("overrides") or {})
        except (KeyError, RuntimeError) as err:
            raise ValueError(f"--init {name_or_path}: its weights do not fit model.name "
                             f"{self.cfg['model']['name']!r} ({one_line(err)})") from None
        if self.ema is not None:
            self.ema = EMA(self.model, self.ema.decay)

    def close(self, synchronise: bool = True) -> None:
        """Destroy the process group this trainer created, if any (a group the caller made
        is left alone). Why: left to the interpreter's shutdown, the ranks' communication
        threads were sometimes destroyed while still joinable ("terminate called without an
        active exception", SIGABRT on one rank). ``synchronise`` waits for every rank first;
        pass False after an error, where a barrier could hang."""
        if self._owns_process_group and torch.distributed.is_initialized():
            if synchronise:
                torch.distributed.barrier()
            torch.distributed.destroy_process_group()
        self._owns_process_group = False

    def export(self, path: str | os.PathLike | None = None, half: bool = True) -> Path:
        """Write the (EMA) weights as safetensors + JSON spec."""
        model = build_model(self.cfg)
        if self.ema is not None:
            self.ema.copy_to(model)
            self._recalibrate(model)
        else:
            model.load_state_dict(self.model.state_dict())
        if isinstance(model, BlindMalleNet):
            model.map_variation = self.model.map_variation
        name = self.cfg["model"]["name"]
        path = Path(path) if path else self.out / f"{name}.safetensors"
        return save_model(model, path, half=half, meta={"steps": self.step})

    # ------------------------------------------------------------------ loop
    def _train_step(self, batch) -> float:
        clean, noisy, sigma, full_size = (t.to(self.device, non_blocking=True) for t in batch)
        if self.channels_last:
            clean = clean.contiguous(memory_format=torch.channels_last)
            noisy = noisy.contiguous(memory_format=torch.channels_last)
        with torch.autocast(
            self.device.type, dtype=torch.bfloat16, enabled=bool(self.cfg["train"]["bf16"])
        ):
            if self.estimate_only:
                pred, estimate = None, self.model.estimator(noisy)
            elif self.blind:
                pred, estimate = self.net(
                    noisy,
                    sigma,
                    also_estimate=True,
                    blind=self._blind_mask(noisy.shape[0]),
                    detach_blind=bool(self.cfg["train"]["blind_detach"]),
                )
            else:
                pred = self.net(noisy, sigma)
        loss = torch.zeros((), device=self.device)
        if pred is not None:
            loss = self.loss_fn(pred.float(), clean, full_size if self.soft_chroma else None)
        if self.blind:
            level = sigma if sigma.dim() == 4 else sigma.view(-1, 1, 1, 1).expand_as(estimate)
            weight = float(self.cfg["train"]["level_loss_weight"])
            under = float(self.cfg["train"]["level_under_weight"])
            loss = loss + weight * noise_level_loss(estimate.float(), level, under)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        clip = float(self.cfg["optim"]["grad_clip"] or 0)
        if clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        self.opt.step()
        self._tick()  # before the scheduler: a time budget's lr follows the clock
        self.sched.step()
        if self.ema is not None:
            self.ema.update(self.model, self.step)
        return float(loss.detach())

    def _blind_mask(self, batch: int) -> torch.Tensor | None:
        """The samples of this step whose denoiser is conditioned on the estimate
        (``train.blind_prob``): a pure function of (seed, step, rank), so resume is exact."""
        p = float(self.cfg["train"]["blind_prob"])
        if p <= 0:
            return None
        seq = np.random.SeedSequence((int(self.cfg["train"]["seed"]), 31, self.step, self.rank))
        gen = torch.Generator().manual_seed(int(seq.generate_state(1, np.uint64)[0] >> 1))
        return torch.rand(batch, generator=gen) < p

    def _tick(self) -> None:
        """Update ``self.elapsed`` (training seconds, across resumes) from the clock."""
        t0, elapsed0 = self._clock
        self.elapsed = elapsed0 + (time.monotonic() - t0)
        if self.budget_s is not None and self.world > 1:
            # Every rank must see the same clock: the same learning rate (or the replicas
            # drift apart) and the same last step (or a collective hangs).
            clock = torch.tensor([self.elapsed], dtype=torch.float64, device=self.device)
            torch.distributed.all_reduce(clock, op=torch.distributed.ReduceOp.MAX)
            self.elapsed = float(clock)

    def _on_signal(self, signum, frame):
        self._stop = True

    def fit(self, steps: int | None = None) -> dict:
        """Train until ``train.steps`` (or ``steps`` more), or until the ``train.minutes``
        budget is spent; returns the last metrics."""
        t = self.cfg["train"]
        total = int(t["steps"])
        end = total if steps is None else min(total, self.step + steps)
        if self.budget_s is not None and self.elapsed >= self.budget_s:
            end = self.step  # the time budget is already spent: nothing to train
        d = self.cfg["data"]
        loader = torch.utils.data.DataLoader(
            self.batches,
            batch_size=None,
            sampler=range(self.step, end),
            num_workers=int(d["workers"]),
            persistent_workers=False,
        )
        log = None
        if self.rank == 0:
            log = MetricsLog(self.out, t["val_sigmas"], BLIND_VAL_KEYS if self.blind else ())
        old_handlers = {}
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                old_handlers[sig] = signal.signal(sig, self._on_signal)
        except ValueError:  # not in the main thread
            pass
        bar = None
        if self.progress and self.rank == 0:
            from tqdm import tqdm

            # With a time budget the step count is only a cap: no misleading total.
            total_bar = None if self.budget_s is not None else end
            bar = tqdm(total=total_bar, initial=self.step, unit="step", dynamic_ncols=True)
        pixels_per_step = int(d["batch_size"]) * int(d["patch_size"]) ** 2 * self.world
        last_ckpt = time.monotonic()
        t0, s0 = time.monotonic(), self.step
        self._clock = (t0, self.elapsed)
        last = {}
        self._train_mode()
        try:
            for batch in loader:
                loss = self._train_step(batch)
                self.step += 1
                now = time.monotonic()
                rate = (self.step - s0) * pixels_per_step / max(1e-9, now - t0)
                last = {
                    "step": self.step,
                    "loss": loss,
                    "lr": self.sched.get_last_lr()[0],
                    "pixels_per_s": rate,
                }
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss:.4f}", px_s=f"{rate:,.0f}")
                val_every = int(t["val_every"] or 0)
                if val_every and self.step % val_every == 0 and self.rank == 0:
                    last.update(self.validate())
                    if bar is not None:
                        bar.write(" ".join(f"{k}={v:.4g}" for k, v in last.items()))
                if log is not None and (
                    self.step % int(t["log_every"]) == 0 or any(k.startswith("psnr") for k in last)
                ):
                    log.write(self.step, last)
                    for k in [k for k in last if k.startswith("psnr")]:
                        last.pop(k)
                if self.step % int(t["ckpt_every"]) == 0 or now - last_ckpt > 60 * float(
                    t["ckpt_minutes"]
                ):
                    self.save_checkpoint()
                    last_ckpt = now
                if self._stop or (self.budget_s is not None and self.elapsed >= self.budget_s):
                    break
        finally:
            self.save_checkpoint()
            if self.rank == 0:
                self.export()
            if bar is not None:
                bar.close()
            if log is not None:
                log.close()
            for sig, handler in old_handlers.items():
                signal.signal(sig, handler)
        return last
