"""The training loop (paper section 2.3), top to bottom.

load batch -> encode sound -> G makes the 100 frames -> D step on detached fakes -> G step
with D frozen -> metrics -> log / sample / checkpoint every N steps. Rank 0 alone writes the
run folder; every rank trains (DistributedDataParallel when started by torchrun).
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from s2vmodel import losses
from s2vmodel.audio import slot_spectrogram
from s2vmodel.cache import ClipCache, build_cache, cache_key, cache_size
from s2vmodel.checkpoint import checkpoint_config, load_checkpoint, save_checkpoint
from s2vmodel.config import Config
from s2vmodel.data import ClipStream, DataError, TrainData, fixed_batch, load_clip_refs
from s2vmodel.ddp import DistInfo, barrier, gather_rows, init_distributed, shutdown
from s2vmodel.model import S2VGenerator, build_discriminators
from s2vmodel.nets import ImageDiscriminator, VideoDiscriminator
from s2vmodel.samples import to_uint8, write_pair_video, write_strip

log = logging.getLogger(__name__)

StepCallback = Callable[[int, int, dict[str, float]], None]


class TrainError(RuntimeError):
    """A run that cannot start or continue (bad resume, unusable device)."""


@dataclass
class TrainResult:
    """What a finished run did."""

    run_dir: Path  # the run folder
    step: int  # optimisation steps completed
    metrics: dict[str, float] = field(default_factory=dict)  # the last metrics line
    skipped: list[str] = field(default_factory=list)  # malformed clips met on rank 0 (named, skipped)


class TrainGenerator(nn.Module):
    """The generator as trained: SE over the whole sound, G on the `frames` slots from `start`."""

    def __init__(self, generator: S2VGenerator, *, frames: int) -> None:
        super().__init__()
        self.generator = generator
        self.frames = frames

    def forward(self, image: torch.Tensor, spec: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
        """Return (B, frames, 3, H, W) for image (B,3,H,W), spec (B,120,F) and start (B,)."""
        feats = self.generator.encode_sound(spec)  # (B, 120, D): the BLSTM hears all 4 s
        offsets = start[:, None] + torch.arange(self.frames, device=spec.device)  # (B, 100)
        used = torch.gather(feats, 1, offsets[:, :, None].expand(-1, -1, feats.shape[2]))  # (B, 100, D)
        return self.generator.generate_frames(image, used)  # (B, 100, 3, H, W)


class Discriminators(nn.Module):
    """D_I and D_V in one module, so the D step is one (DDP) forward."""

    def __init__(self, d_image: ImageDiscriminator, d_video: VideoDiscriminator) -> None:
        super().__init__()
        self.image = d_image
        self.video = d_video

    def forward(
        self, real_frames: torch.Tensor, fake_frames: torch.Tensor, real_clips: torch.Tensor, fake_clips: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return patch logits (D_I real, D_I fake, D_V real, D_V fake); real and fake in separate calls (batch norm)."""
        return self.image(real_frames), self.image(fake_frames), self.video(real_clips), self.video(fake_clips)


def resolve_device(name: str, info: DistInfo) -> torch.device:
    """Return the torch device for --device auto|cpu|cuda."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise TrainError("--device cuda asked for, but torch sees no CUDA device: use --device cpu or auto")
        return torch.device("cuda", info.local_rank)
    if name != "cpu":
        raise TrainError(f"unknown device {name!r}: use auto, cpu or cuda")
    return torch.device("cpu")


def to_video(frames: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Return (B, T, 3, H, W) float in [-1, 1] from (B, T, H, W, 3) uint8 frames."""
    return frames.to(device).permute(0, 1, 4, 2, 3).float() / 127.5 - 1


def resumed_config(saved: Config, asked: Config) -> Config:
    """Return the saved run's config with what a resume may change: total steps, device, loader and logging."""
    train = replace(
        saved.train,
        steps=asked.train.steps,
        device=asked.train.device,
        amp=asked.train.amp,
        threads=asked.train.threads,
        log_every=asked.train.log_every,
        sample_every=asked.train.sample_every,
        ckpt_every=asked.train.ckpt_every,
        snapshot_every=asked.train.snapshot_every,
    )
    data = replace(saved.data, workers=asked.data.workers, cache=asked.data.cache)
    return replace(saved, train=train, data=data)


def prepare_data(
    manifests: list[Path], *, config: Config, info: DistInfo, progress: Callable[[int, int], None] | None = None
) -> tuple[TrainData, dict, ClipCache | None]:
    """Return (the rank's endless batch iterator, the fixed metrics batch, the cache or None)."""
    refs = load_clip_refs(manifests, split=config.data.split)
    cache = None
    if config.data.cache:
        size = cache_size(crop=config.data.crop)
        folder = Path(config.data.cache) / cache_key(manifests, split=config.data.split, size=size)
        if info.is_main:
            cache = build_cache(refs, folder=folder, size=size, progress=progress)
        barrier(info)
        if cache is None:
            cache = ClipCache(folder)
    stream = ClipStream(
        refs,
        data=config.data,
        batch_size=config.train.batch_size,
        seed=config.train.seed,
        rank=info.rank,
        world=info.world,
        cache=cache,
    )
    try:
        val_refs = load_clip_refs(manifests, split="val")
    except DataError:
        # no val clips: report L1 on a fixed train batch instead, as the metrics line says
        val_refs = refs
    val_refs = sorted(val_refs, key=lambda r: r.clip_id)
    fixed = fixed_batch(val_refs, data=config.data, count=config.data.val_clips, seed=config.train.seed) if info.is_main else {}
    if fixed:
        fixed["split"] = "val" if val_refs is not refs else config.data.split
    return TrainData(stream, workers=config.data.workers), fixed, cache


def _ema_update(ema: nn.Module, model: nn.Module, *, decay: float) -> None:
    with torch.no_grad():
        for e, p in zip(ema.parameters(), model.parameters()):
            e.lerp_(p, 1 - decay)
        for e, b in zip(ema.buffers(), model.buffers()):
            e.copy_(b)


def _trim_metrics(path: Path, *, step: int) -> None:
    """Drop metrics lines after `step` (written by a run killed after its last checkpoint)."""
    if not path.exists():
        return
    lines = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
    path.write_text("".join(line + "\n" for line in lines))


@torch.no_grad()
def evaluate_fixed(generator: S2VGenerator, fixed: dict, *, config: Config, device: torch.device) -> dict[str, Any]:
    """Return L1 of generated vs real on the fixed batch, the still-image L1, and the arrays for samples."""
    was_training = generator.training
    generator.eval()
    video = to_video(fixed["frames"], device)  # (B, 100, 3, 64, 64)
    spec = slot_spectrogram(fixed["wave"].to(device), hop=config.model.hop, n_fft=config.model.n_fft)
    fake = TrainGenerator(generator, frames=config.data.frames)(video[:, 0], spec, fixed["start"].to(device))
    generator.train(was_training)
    still = video[:, :1].expand_as(video)
    return {
        "l1": float(losses.l1_loss(fake, video)),
        "l1_still": float(losses.l1_loss(still, video)),
        "fake": fake.float().cpu().numpy(),
        "real": video.cpu().numpy(),
    }


def write_samples(run_dir: Path, *, step: int, fixed: dict, result: dict) -> None:
    """Write samples/step-NNNNNN.png and .mp4 for the first clip of the fixed batch."""
    fake, real = to_uint8(result["fake"][0]), to_uint8(result["real"][0])
    stem = run_dir / "samples" / f"step-{step:06d}"
    write_strip(stem.with_suffix(".png"), image=real[0], generated=fake, real=real)
    start, frames = int(fixed["start"][0]), fake.shape[0]
    audio = fixed["wave"][0].numpy()[start * 1470 : (start + frames) * 1470]
    try:
        write_pair_video(stem.with_suffix(".mp4"), generated=fake, real=real, audio=audio)
    except (OSError, ValueError) as err:
        log.warning("could not write sample video %s: %s", stem.with_suffix(".mp4"), err)


def train(
    manifests: list[Path],
    *,
    out: Path,
    config: Config,
    resume: bool = False,
    on_step: StepCallback | None = None,
    on_cache: Callable[[int, int], None] | None = None,
) -> TrainResult:
    """Return the result of training config on the manifests' clips into run folder `out` (DESIGN section 8)."""
    out = Path(out)
    latest = out / "checkpoints" / "latest.pt"
    state: dict[str, Any] | None = None
    if resume:
        if not latest.is_file():
            raise TrainError(f"--resume: no checkpoint at {latest}: start the run without --resume")
        state = load_checkpoint(latest)
        config = resumed_config(checkpoint_config(state), config)
    elif latest.is_file():
        raise TrainError(f"{out} already holds a run ({latest}): pass --resume to continue it or choose another --out")

    use_cuda = config.train.device == "cuda" or (config.train.device == "auto" and torch.cuda.is_available())
    info = init_distributed(cuda=use_cuda)
    try:
        return _run(manifests, out=out, config=config, state=state, info=info, on_step=on_step, on_cache=on_cache)
    finally:
        shutdown(info)


def _run(
    manifests: list[Path],
    *,
    out: Path,
    config: Config,
    state: dict[str, Any] | None,
    info: DistInfo,
    on_step: StepCallback | None,
    on_cache: Callable[[int, int], None] | None,
) -> TrainResult:
    device = resolve_device(config.train.device, info)
    if config.train.threads > 0:
        # spinning OpenMP threads that compete with other processes cost far more than they give
        torch.set_num_threads(config.train.threads)
    mc, tc, dc = config.model, config.train, config.data
    torch.manual_seed(tc.seed)  # same initial weights on every rank (DDP also broadcasts rank 0's)
    generator = S2VGenerator(mc).to(device)
    discriminators = Discriminators(*build_discriminators(mc)).to(device)
    ema = copy.deepcopy(generator).eval() if tc.ema > 0 else None
    opt_g = torch.optim.Adam(generator.parameters(), lr=tc.lr, betas=(tc.beta1, tc.beta2))
    opt_d = torch.optim.Adam(discriminators.parameters(), lr=tc.lr, betas=(tc.beta1, tc.beta2))
    # our own generator for which frames D sees: nothing else draws from it, so resume is exact
    picks = torch.Generator().manual_seed(tc.seed * 7919 + info.rank)

    data, fixed, _ = prepare_data(manifests, config=config, info=info, progress=on_cache)
    step = 0
    if state is not None:
        generator.load_state_dict(state["generator"])
        discriminators.image.load_state_dict(state["d_image"])
        discriminators.video.load_state_dict(state["d_video"])
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        if ema is not None:
            ema.load_state_dict(state.get("generator_ema") or state["generator"])
        torch.set_rng_state(state["rng"]["torch"])
        picks.set_state(state["rng"]["picks"][min(info.rank, len(state["rng"]["picks"]) - 1)])
        if device.type == "cuda" and state["rng"].get("cuda"):
            torch.cuda.set_rng_state(state["rng"]["cuda"][0], device)
        positions = state["data"]
        if positions.shape[0] == info.world:
            data.load_state(positions[info.rank].tolist())
        else:
            log.warning("checkpoint has data positions of %d ranks, now %d: starting the next epoch", positions.shape[0], info.world)
            data.load_state([0, int(positions[:, 1::2].max())])
        step = int(state["step"])
        del state

    g_train: nn.Module = TrainGenerator(generator, frames=dc.frames)
    d_train: nn.Module = discriminators
    if info.enabled:
        ids = [device.index] if device.type == "cuda" else None
        g_train = DistributedDataParallel(g_train, device_ids=ids)
        d_train = DistributedDataParallel(d_train, device_ids=ids)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if tc.amp and device.type == "cuda" else nullcontext()

    writer = None
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
        _trim_metrics(out / "metrics.jsonl", step=step)
        from torch.utils.tensorboard import SummaryWriter  # imported here: it is slow and only rank 0 writes

        writer = SummaryWriter(str(out / "tb"), purge_step=step + 1 if step else None)
    log.info("training %s from step %d to %d on %s (%d rank(s))", out, step, tc.steps, device, info.world)

    last: dict[str, float] = {}
    window_start, window_steps = time.perf_counter(), 0
    run_start_step, run_start = step, time.perf_counter()
    while step < tc.steps:
        batch = next(data)
        video = to_video(batch["frames"], device)  # (B, 100, 3, 64, 64)
        image = video[:, 0]  # (B, 3, 64, 64): the input image is the first of the 100
        wave = batch["wave"].to(device)  # (B, 176400), peak-normalised
        spec = slot_spectrogram(wave, hop=mc.hop, n_fft=mc.n_fft)  # (B, 120, F)
        B, T = video.shape[:2]

        with autocast:
            fake = g_train(image, spec, batch["start"].to(device))  # (B, 100, 3, 64, 64)
        index = losses.frame_indices(batch=B, frames=T, count=tc.image_frames, generator=picks)  # (B, k)
        starts = losses.window_starts(batch=B, frames=T, length=mc.video_frames, generator=picks)  # (B,)
        real_frames = losses.take_frames(video, index)  # (B*k, 3, 64, 64)
        fake_frames = losses.take_frames(fake, index)
        real_clips = losses.take_windows(video, starts, length=mc.video_frames)  # (B, 3, 16, 64, 64)
        fake_clips = losses.take_windows(fake, starts, length=mc.video_frames)

        # D step: D_I and D_V maximise L on real vs detached generated frames
        with autocast:
            ri, fi, rv, fv = d_train(real_frames, fake_frames.detach(), real_clips, fake_clips.detach())
            loss_di = losses.d_loss(ri.float(), fi.float(), kind=tc.loss)
            loss_dv = losses.d_loss(rv.float(), fv.float(), kind=tc.loss)
            loss_d = tc.lambda_image * loss_di + tc.lambda_video * loss_dv
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()

        # G step: SE and G minimise L with D frozen (plain modules: D's gradients here are not used)
        discriminators.requires_grad_(False)
        with autocast:
            adv_i = losses.g_adv_loss(discriminators.image(fake_frames).float(), kind=tc.loss)
            adv_v = losses.g_adv_loss(discriminators.video(fake_clips).float(), kind=tc.loss)
            l1 = losses.l1_loss(fake.float(), video)
            loss_g = tc.lambda_image * adv_i + tc.lambda_video * adv_v + tc.lambda_l1 * l1
            if tc.lambda_motion > 0:
                loss_g = loss_g + tc.lambda_motion * losses.motion_l1_loss(fake.float(), video, image=image)
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        discriminators.requires_grad_(True)
        if ema is not None:
            _ema_update(ema, generator, decay=tc.ema)
        step += 1
        window_steps += 1

        final = step == tc.steps
        metrics = {
            name: value.item()
            for name, value in (
                ("loss_d", loss_d), ("loss_g", loss_g), ("d_image", loss_di), ("d_video", loss_dv),
                ("adv_image", adv_i), ("adv_video", adv_v), ("l1", l1),
            )
        }
        if step % tc.log_every == 0 or final:
            elapsed = time.perf_counter() - window_start
            rate = window_steps / elapsed if elapsed > 0 else 0.0
            metrics.update(
                steps_per_s=rate,
                clips_per_s=rate * B * info.world,
                epoch=float(data.epoch),
                skipped=float(len(data.skipped)),
            )
            if info.is_main:
                result = evaluate_fixed(ema or generator, fixed, config=config, device=device)
                metrics.update(val_l1=result["l1"], val_l1_still=result["l1_still"])
                line = {"step": step, **{k: round(v, 6) for k, v in metrics.items()}, "val_split": fixed["split"]}
                with (out / "metrics.jsonl").open("a") as fh:
                    fh.write(json.dumps(line) + "\n")
                for key, value in metrics.items():
                    writer.add_scalar(f"train/{key}", value, step)
                if step % tc.sample_every == 0 or final:
                    write_samples(out, step=step, fixed=fixed, result=result)
            window_start, window_steps = time.perf_counter(), 0
        if step % tc.ckpt_every == 0 or final or (tc.snapshot_every and step % tc.snapshot_every == 0):
            # every rank takes part in the gather; rank 0 writes
            positions = gather_rows(data.state(), info, device=device)
            pick_states = [picks.get_state()]
            if info.enabled:
                gathered = [None] * info.world
                torch.distributed.all_gather_object(gathered, picks.get_state())
                pick_states = gathered
            if info.is_main:
                ckpt = {
                    "step": step,
                    "config": config.to_dict(),
                    "generator": generator.state_dict(),
                    "d_image": discriminators.image.state_dict(),
                    "d_video": discriminators.video.state_dict(),
                    "opt_g": opt_g.state_dict(),
                    "opt_d": opt_d.state_dict(),
                    "rng": {
                        "torch": torch.get_rng_state(),
                        "picks": pick_states,
                        "cuda": [torch.cuda.get_rng_state(device)] if device.type == "cuda" else [],
                    },
                    "data": positions,
                }
                if ema is not None:
                    ckpt["generator_ema"] = ema.state_dict()
                save_checkpoint(out / "checkpoints" / "latest.pt", ckpt)
                if tc.snapshot_every and step % tc.snapshot_every == 0:
                    save_checkpoint(out / "checkpoints" / f"step-{step:06d}.pt", ckpt)
        last = metrics
        if on_step is not None and info.is_main:
            done = step - run_start_step
            spent = time.perf_counter() - run_start
            metrics["eta_s"] = spent / done * (tc.steps - step) if done else math.nan
            on_step(step, tc.steps, metrics)

    if writer is not None:
        writer.close()
    for name in data.skipped:
        log.warning("skipped malformed clip: %s", name)
    return TrainResult(run_dir=out, step=step, metrics=last, skipped=list(data.skipped))
