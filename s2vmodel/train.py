"""The training loop (paper section 2.3), top to bottom.

load batch -> encode sound -> G makes the 100 frames -> D step on detached fakes -> G step
with D frozen -> metrics -> log / sample / checkpoint every N steps. Rank 0 alone writes the
run folder (`RunFolder`); every rank trains (DistributedDataParallel when started by
torchrun). The pieces, in the order `train` uses them: `prepare_data`, `Nets` (build,
restore, state), `train_step`, `RunFolder`, `estimate_cost`.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
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
from s2vmodel.clipio import DataError, load_clip_refs
from s2vmodel.config import PRESETS, Config, apply_overrides
from s2vmodel.data import ClipStream, TrainData, fixed_batch
from s2vmodel.ddp import DistInfo, all_gather_objects, barrier, gather_rows, init_distributed, shutdown
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
    skipped: list[str] = field(default_factory=list)  # clips that could not be used, met on rank 0 (named, skipped)


@dataclass(frozen=True)
class RunCost:
    """What a run will cost here, measured on one timed step before it starts."""

    steps: int  # steps left to train
    seconds_per_step: float  # one step of this run's networks on this device
    device: str  # where it trains
    tiny_seconds: float | None = None  # the tiny preset's whole default run here (given when there is no GPU)

    @property
    def seconds(self) -> float:
        """Return the estimated time of the steps left."""
        return self.steps * self.seconds_per_step


class TrainGenerator(nn.Module):
    """The generator as trained: SE over the whole sound, G on the `frames` slots from `start`.

    With `previous_frame`, G sees each frame's predecessor: the real one (teacher forcing),
    or, for a share `mix` of the frames, G's own guess of it from a first pass without
    gradients (parallel scheduled sampling, Duckworth et al. 2019). Frame 0's
    predecessor is the input image itself, as when generating.
    """

    def __init__(self, generator: S2VGenerator, *, frames: int) -> None:
        super().__init__()
        self.generator = generator
        self.frames = frames

    def forward(
        self,
        image: torch.Tensor,
        spec: torch.Tensor,
        start: torch.Tensor,
        video: torch.Tensor,
        own: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Return (frames, blend content or None), each (B, frames, 3, H, W), for image (B,3,H,W), spec (B,120,F), start (B,)
        and the real video (B, frames, 3, H, W).

        own: (B, frames) bool, which frames get G's own guess of their predecessor (None: all real);
        noise: each clip's random map (B, noise, H, W), for a G with noise channels.
        """
        feats = self.generator.encode_sound(spec)  # (B, 120, D): the BLSTM hears all 4 s
        offsets = start[:, None] + torch.arange(self.frames, device=spec.device)  # (B, 100)
        used = torch.gather(feats, 1, offsets[:, :, None].expand(-1, -1, feats.shape[2]))  # (B, 100, D)
        g = self.generator.generator
        if not g.previous:
            return g.frames_and_content(image, used, None, noise)  # (B, 100, 3, H, W)
        before = torch.cat([image[:, None], video[:, :-1]], dim=1)  # (B, 100, 3, H, W): the real predecessors
        if own is not None and bool(own.any()):
            with torch.no_grad():
                guess = g(image, used, before, noise)
            guessed = torch.cat([image[:, None], guess[:, :-1]], dim=1)
            before = torch.where(own.to(image.device)[:, :, None, None, None], guessed, before)
        return g.frames_and_content(image, used, before, noise)


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
    manifests: list[Path | str], *, config: Config, info: DistInfo, progress: Callable[[int, int], None] | None = None
) -> tuple[TrainData, dict]:
    """Return (the rank's endless batch iterator, the fixed metrics batch: val clips, else train clips; empty off rank 0)."""
    refs = load_clip_refs(manifests, split=config.data.split)
    cache = open_cache(manifests, refs=refs, config=config, info=info, progress=progress) if config.data.cache else None
    stream = ClipStream(
        refs,
        data=config.data,
        batch_size=config.train.batch_size,
        seed=config.train.seed,
        rank=info.rank,
        world=info.world,
        cache=cache,
    )
    fixed: dict = {}
    if info.is_main:
        try:
            val_refs, split = load_clip_refs(manifests, split="val"), "val"
        except DataError:
            # no val clips: report L1 on a fixed train batch instead, as the metrics line says
            val_refs, split = refs, config.data.split
        val_refs = sorted(val_refs, key=lambda r: r.clip_id)
        fixed = {**fixed_batch(val_refs, data=config.data, count=config.data.val_clips, seed=config.train.seed), "split": split}
    return TrainData(stream, workers=config.data.workers), fixed


def open_cache(
    manifests: list[Path | str], *, refs: list, config: Config, info: DistInfo, progress: Callable[[int, int], None] | None
) -> ClipCache:
    """Return the decoded cache of refs: rank 0 builds it when missing, the other ranks wait and open it."""
    size = cache_size(crop=config.data.crop)
    remote = [r for r in refs if "://" in r.shard]
    folder = Path(config.data.cache) / cache_key(manifests, split=config.data.split, size=size, refs=remote)
    if info.is_main:
        build_cache(refs, folder=folder, size=size, progress=progress)
    barrier(info)
    return ClipCache(folder)


@dataclass
class Nets:
    """The networks of a run and what trains them: G (+ its EMA), D_I and D_V, their optimisers, and D's frame picker."""

    generator: S2VGenerator
    discriminators: Discriminators
    ema: S2VGenerator | None
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    picks: torch.Generator  # which frames D sees, and which predecessors are G's own: nothing else draws from it

    @classmethod
    def build(cls, config: Config, *, device: torch.device, rank: int = 0) -> Nets:
        """Return fresh networks for config (the same initial weights on every rank)."""
        tc = config.train
        torch.manual_seed(tc.seed)  # DDP also broadcasts rank 0's weights
        generator = S2VGenerator(config.model).to(device)
        discriminators = Discriminators(*build_discriminators(config.model)).to(device)
        return cls(
            generator=generator,
            discriminators=discriminators,
            ema=copy.deepcopy(generator).eval() if tc.ema > 0 else None,
            opt_g=torch.optim.Adam(generator.parameters(), lr=tc.lr, betas=(tc.beta1, tc.beta2)),
            opt_d=torch.optim.Adam(discriminators.parameters(), lr=tc.lr, betas=(tc.beta1, tc.beta2)),
            picks=torch.Generator().manual_seed(tc.seed * 7919 + rank),
        )

    def restore(self, state: dict[str, Any], *, rank: int, device: torch.device) -> None:
        """Load weights, optimisers and random states from a checkpoint dict."""
        self.generator.load_state_dict(state["generator"])
        self.discriminators.image.load_state_dict(state["d_image"])
        self.discriminators.video.load_state_dict(state["d_video"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        if self.ema is not None:
            self.ema.load_state_dict(state.get("generator_ema") or state["generator"])
        torch.set_rng_state(state["rng"]["torch"])
        self.picks.set_state(state["rng"]["picks"][min(rank, len(state["rng"]["picks"]) - 1)])
        if device.type == "cuda" and state["rng"].get("cuda"):
            torch.cuda.set_rng_state(state["rng"]["cuda"][0], device)

    def state(self, *, step: int, config: Config, positions: torch.Tensor, picks: list, device: torch.device) -> dict[str, Any]:
        """Return the checkpoint dict (checkpoint.py's layout) of this step."""
        state = {
            "step": step,
            "config": config.to_dict(),
            "generator": self.generator.state_dict(),
            "d_image": self.discriminators.image.state_dict(),
            "d_video": self.discriminators.video.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "picks": picks,
                "cuda": [torch.cuda.get_rng_state(device)] if device.type == "cuda" else [],
            },
            "data": positions,
        }
        if self.ema is not None:
            state["generator_ema"] = self.ema.state_dict()
        return state

    def update_ema(self, *, decay: float) -> None:
        """Move the EMA weights towards the generator's (no-op without EMA)."""
        if self.ema is None:
            return
        with torch.no_grad():
            for e, p in zip(self.ema.parameters(), self.generator.parameters(), strict=True):
                e.lerp_(p, 1 - decay)
            for e, b in zip(self.ema.buffers(), self.generator.buffers(), strict=True):
                e.copy_(b)


@dataclass
class Trainable:
    """The modules a step calls: G and D, wrapped in DistributedDataParallel when several ranks train."""

    g: nn.Module
    d: nn.Module
    autocast: AbstractContextManager

    @classmethod
    def wrap(cls, nets: Nets, *, config: Config, info: DistInfo, device: torch.device) -> Trainable:
        """Return the step's modules for nets on this rank."""
        g: nn.Module = TrainGenerator(nets.generator, frames=config.data.frames)
        d: nn.Module = nets.discriminators
        if info.enabled:
            ids = [device.index] if device.type == "cuda" else None
            g, d = DistributedDataParallel(g, device_ids=ids), DistributedDataParallel(d, device_ids=ids)
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if config.train.amp and device.type == "cuda" else nullcontext()
        return cls(g=g, d=d, autocast=autocast)


def own_share(config: Config, *, step: int) -> float:
    """Return the share of predecessors that are G's own guess at this step: 0, rising to scheduled_sampling."""
    if not config.model.previous_frame or config.train.scheduled_sampling <= 0:
        return 0.0
    return config.train.scheduled_sampling * min(1.0, step / max(1, config.train.scheduled_ramp))


def train_step(
    nets: Nets, modules: Trainable, batch: dict, *, config: Config, device: torch.device, step: int
) -> dict[str, torch.Tensor]:
    """Return the losses of one optimisation step (D step, then G step with D frozen) on a batch."""
    mc, tc = config.model, config.train
    video = to_video(batch["frames"], device)  # (B, 100, 3, 64, 64)
    image = video[:, 0]  # (B, 3, 64, 64): the input image is the first of the 100
    spec = slot_spectrogram(batch["wave"].to(device), hop=mc.hop, n_fft=mc.n_fft)  # (B, 120, F), peak-normalised sound
    B, T = video.shape[:2]
    share = own_share(config, step=step)
    own = torch.rand(B, T, generator=nets.picks) < share if share > 0 else None

    start = batch["start"].to(device)
    k = tc.samples  # more than 1 only with noise (resolve_config says so)
    noise = None
    if mc.noise:
        # K random maps per clip, drawn from the run's own generator (resumes stay exact)
        H, W = video.shape[-2:]
        noise = torch.randn(k * B, mc.noise, H, W, generator=nets.picks).to(device)
    if k > 1:
        # every clip K times, each with its own map: (K*B, ...), sample j of clip b at j*B + b
        image, spec, start, video = (torch.cat([t] * k) for t in (image, spec, start, video))
        own = torch.cat([own] * k) if own is not None else None
    with modules.autocast:
        fake, content = modules.g(image, spec, start, video, own, noise)  # (K*B, 100, 3, 64, 64) each
    recon = None
    if k > 1:
        # min of K (each clip's closest sample takes the reconstruction terms): G can keep a place of its own for an
        # event the sound cannot place, instead of the mean of every place it could take
        recon = tc.lambda_l1 * losses.l1_per_clip(fake.float(), video)
        if tc.lambda_motion > 0:
            motion = losses.motion_l1_per_clip(fake.float(), video, image=image, symmetric=tc.motion_symmetric)
            recon = recon + tc.lambda_motion * motion
        recon = recon.reshape(k, B).min(dim=0).values.mean()
        # the discriminators judge the first sample of each clip
        fake, video, image = fake[:B], video[:B], image[:B]
        content = content[:B] if content is not None else None
    index = losses.frame_indices(batch=B, frames=T, count=tc.image_frames, generator=nets.picks)  # (B, k)
    starts = losses.window_starts(batch=B, frames=T, length=mc.video_frames, generator=nets.picks)  # (B,)
    real_frames, fake_frames = losses.take_frames(video, index), losses.take_frames(fake, index)  # (B*k, 3, 64, 64)
    real_clips = losses.take_windows(video, starts, length=mc.video_frames)  # (B, 3, 16, 64, 64)
    fake_clips = losses.take_windows(fake, starts, length=mc.video_frames)

    # D step: D_I and D_V maximise L on real vs detached generated frames
    with modules.autocast:
        ri, fi, rv, fv = modules.d(real_frames, fake_frames.detach(), real_clips, fake_clips.detach())
        loss_di = losses.d_loss(ri.float(), fi.float(), kind=tc.loss)
        loss_dv = losses.d_loss(rv.float(), fv.float(), kind=tc.loss)
        loss_d = tc.lambda_image * loss_di + tc.lambda_video * loss_dv
    nets.opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    nets.opt_d.step()

    # G step: SE and G minimise L with D frozen (plain modules: D's gradients here are not used)
    nets.discriminators.requires_grad_(False)
    with modules.autocast:
        adv_i = losses.g_adv_loss(nets.discriminators.image(fake_frames).float(), kind=tc.loss)
        adv_v = losses.g_adv_loss(nets.discriminators.video(fake_clips).float(), kind=tc.loss)
        l1 = losses.l1_loss(fake.float(), video)
        loss_g = tc.lambda_image * adv_i + tc.lambda_video * adv_v
        if recon is not None:
            loss_g = loss_g + recon
        else:
            loss_g = loss_g + tc.lambda_l1 * l1
            if tc.lambda_motion > 0:
                motion = losses.motion_l1_loss(fake.float(), video, image=image, symmetric=tc.motion_symmetric)
                loss_g = loss_g + tc.lambda_motion * motion
        if tc.lambda_temporal > 0:
            loss_g = loss_g + tc.lambda_temporal * losses.temporal_l1_loss(fake.float(), video)
        if content is not None and tc.lambda_content > 0:
            # the blend's content learns what moving pixels look like whatever its share, so the share has something to open to
            loss_g = loss_g + tc.lambda_content * losses.motion_l1_loss(content.float(), video, image=image)
    nets.opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    nets.opt_g.step()
    nets.discriminators.requires_grad_(True)
    nets.update_ema(decay=tc.ema)
    return {
        "loss_d": loss_d,
        "loss_g": loss_g,
        "d_image": loss_di,
        "d_video": loss_dv,
        "adv_image": adv_i,
        "adv_video": adv_v,
        "l1": l1,
    }


@torch.no_grad()
def evaluate_fixed(generator: S2VGenerator, fixed: dict, *, config: Config, device: torch.device) -> dict[str, Any]:
    """Return L1 of generated (as `generate` makes it) vs real on the fixed batch, the still-image L1, and the sample arrays."""
    was_training = generator.training
    generator.eval()
    video = to_video(fixed["frames"], device)  # (B, 100, 3, 64, 64)
    spec = slot_spectrogram(fixed["wave"].to(device), hop=config.model.hop, n_fft=config.model.n_fft)
    feats = generator.encode_sound(spec)  # (B, 120, D)
    offsets = fixed["start"].to(device)[:, None] + torch.arange(video.shape[1], device=device)
    used = torch.gather(feats, 1, offsets[:, :, None].expand(-1, -1, feats.shape[2]))
    fake = generator.generate_frames(video[:, 0], used)
    generator.train(was_training)
    still = video[:, :1].expand_as(video)
    return {
        "l1": float(losses.l1_loss(fake, video)),
        "l1_still": float(losses.l1_loss(still, video)),
        "fake": fake.float().cpu().numpy(),
        "real": video.cpu().numpy(),
    }


class RunFolder:
    """Rank 0's outputs: config.json, metrics.jsonl, TensorBoard events, samples and checkpoints (docs/design.md section 8)."""

    def __init__(self, out: Path, *, config: Config, step: int, fixed: dict) -> None:
        self.out = out
        self.config = config
        self.fixed = fixed
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
        self._trim_metrics(step)
        from torch.utils.tensorboard import SummaryWriter  # imported here: it is slow and only rank 0 writes

        self.writer = SummaryWriter(str(out / "tb"), purge_step=step + 1 if step else None)

    def _trim_metrics(self, step: int) -> None:
        """Drop metrics lines after `step` (written by a run killed after its last checkpoint)."""
        path = self.out / "metrics.jsonl"
        if path.exists():
            lines = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
            path.write_text("".join(line + "\n" for line in lines))

    def log(self, step: int, metrics: dict[str, float], *, generator: S2VGenerator, device: torch.device, sample: bool) -> None:
        """Add val L1 on the fixed batch to metrics, append the metrics line, and write a sample when asked."""
        result = evaluate_fixed(generator, self.fixed, config=self.config, device=device)
        metrics.update(val_l1=result["l1"], val_l1_still=result["l1_still"])
        line = {"step": step, **{k: round(v, 6) for k, v in metrics.items()}, "val_split": self.fixed["split"]}
        with (self.out / "metrics.jsonl").open("a") as fh:
            fh.write(json.dumps(line) + "\n")
        for key, value in metrics.items():
            self.writer.add_scalar(f"train/{key}", value, step)
        if sample:
            self.write_samples(step, result=result)

    def write_samples(self, step: int, *, result: dict) -> None:
        """Write samples/step-NNNNNN.png and .mp4 for the first clip of the fixed batch."""
        fake, real = to_uint8(result["fake"][0]), to_uint8(result["real"][0])
        stem = self.out / "samples" / f"step-{step:06d}"
        write_strip(stem.with_suffix(".png"), image=real[0], generated=fake, real=real)
        start, frames = int(self.fixed["start"][0]), fake.shape[0]
        audio = self.fixed["wave"][0].numpy()[start * 1470 : (start + frames) * 1470]
        try:
            write_pair_video(stem.with_suffix(".mp4"), generated=fake, real=real, audio=audio)
        except (OSError, ValueError) as err:
            log.warning("could not write sample video %s: %s", stem.with_suffix(".mp4"), err)

    def save(self, state: dict[str, Any], *, snapshot: bool) -> None:
        """Write checkpoints/latest.pt (and a kept step-NNNNNN.pt when snapshot)."""
        save_checkpoint(self.out / "checkpoints" / "latest.pt", state)
        if snapshot:
            save_checkpoint(self.out / "checkpoints" / f"step-{state['step']:06d}.pt", state)

    def close(self) -> None:
        """Flush and close the TensorBoard writer."""
        self.writer.close()


class NoFolder:
    """What the other ranks write: nothing."""

    def log(self, step: int, metrics: dict[str, float], **_: Any) -> None:
        """Leave metrics as they are (rank 0 measures val L1)."""

    def save(self, state: dict[str, Any], *, snapshot: bool) -> None:
        """Write nothing."""

    def close(self) -> None:
        """Nothing to close."""


def step_seconds(config: Config, *, device: torch.device, repeats: int = 2) -> float:
    """Return the seconds one training step of config's networks takes here, timed on random data (the run's state untouched)."""
    mc, dc, tc = config.model, config.data, config.train
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        nets = Nets.build(config, device=device)
        modules = Trainable.wrap(nets, config=config, info=DistInfo(), device=device)
        batch = {
            "frames": torch.randint(0, 256, (tc.batch_size, dc.frames, mc.image_size, mc.image_size, 3), dtype=torch.uint8),
            "wave": torch.rand(tc.batch_size, 176_400) * 2 - 1,
            "start": torch.zeros(tc.batch_size, dtype=torch.long),
        }
        times = []
        for i in range(repeats + 1):  # the first step pays for allocations: not timed
            started = time.perf_counter()
            train_step(nets, modules, batch, config=config, device=device, step=i)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - started)
    return min(times[1:])


def estimate_cost(config: Config, *, device: torch.device, step: int) -> RunCost:
    """Return what the rest of the run will cost here; without a GPU, also what the tiny preset's whole run costs."""
    per_step = step_seconds(config, device=device)
    tiny_seconds = None
    if device.type == "cpu":
        tiny = apply_overrides(Config(preset="tiny"), PRESETS["tiny"])
        tiny = replace(tiny, train=replace(tiny.train, threads=config.train.threads or tiny.train.threads))
        tiny_seconds = tiny.train.steps * (
            per_step if config.preset == "tiny" and config.model == tiny.model else step_seconds(tiny, device=device)
        )
    return RunCost(steps=config.train.steps - step, seconds_per_step=per_step, device=str(device), tiny_seconds=tiny_seconds)


def train(
    manifests: list[Path | str],
    *,
    out: Path,
    config: Config,
    resume: bool = False,
    on_step: StepCallback | None = None,
    on_cache: Callable[[int, int], None] | None = None,
    on_cost: Callable[[RunCost], None] | None = None,
) -> TrainResult:
    """Return the result of training config on the manifests' clips into run folder `out` (docs/design.md section 8).

    on_cache(done, total) reports the cache build, on_cost(RunCost) what the run will cost
    (measured only when given), on_step(step, total, metrics) every step on rank 0.
    """
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
        return _run(
            manifests, out=out, config=config, state=state, info=info, on_step=on_step, on_cache=on_cache, on_cost=on_cost
        )
    finally:
        shutdown(info)


def _run(
    manifests: list[Path | str],
    *,
    out: Path,
    config: Config,
    state: dict[str, Any] | None,
    info: DistInfo,
    on_step: StepCallback | None,
    on_cache: Callable[[int, int], None] | None,
    on_cost: Callable[[RunCost], None] | None,
) -> TrainResult:
    tc = config.train
    device = resolve_device(tc.device, info)
    if tc.threads > 0:
        # spinning OpenMP threads that compete with other processes cost far more than they give
        torch.set_num_threads(tc.threads)
    nets = Nets.build(config, device=device, rank=info.rank)
    data, fixed = prepare_data(manifests, config=config, info=info, progress=on_cache)
    step = resume_from(state, nets=nets, data=data, info=info, device=device)
    del state
    modules = Trainable.wrap(nets, config=config, info=info, device=device)
    folder = RunFolder(out, config=config, step=step, fixed=fixed) if info.is_main else NoFolder()
    if on_cost is not None and info.is_main:
        on_cost(estimate_cost(config, device=device, step=step))
    log.info("training %s from step %d to %d on %s (%d rank(s))", out, step, tc.steps, device, info.world)

    metrics: dict[str, float] = {}
    window = RateWindow(start_step=step)
    while step < tc.steps:
        losses_now = train_step(nets, modules, next(data), config=config, device=device, step=step)
        step += 1
        final = step == tc.steps
        metrics = {name: value.item() for name, value in losses_now.items()}
        if step % tc.log_every == 0 or final:
            rate = window.rate(step)
            metrics.update(
                steps_per_s=rate,
                clips_per_s=rate * tc.batch_size * info.world,
                epoch=float(data.epoch),
                skipped=float(len(data.skipped)),
            )
            folder.log(
                step, metrics, generator=nets.ema or nets.generator, device=device, sample=step % tc.sample_every == 0 or final
            )
        snapshot = bool(tc.snapshot_every) and step % tc.snapshot_every == 0
        if step % tc.ckpt_every == 0 or final or snapshot:
            # every rank takes part in the gathers; rank 0 writes
            positions = gather_rows(data.state(), info, device=device)
            picks = all_gather_objects(nets.picks.get_state(), info)
            folder.save(nets.state(step=step, config=config, positions=positions, picks=picks, device=device), snapshot=snapshot)
        if on_step is not None and info.is_main:
            on_step(step, tc.steps, {**metrics, "eta_s": window.eta(step, total=tc.steps)})

    folder.close()
    for name in data.skipped:
        log.warning("skipped clip: %s", name)
    return TrainResult(run_dir=out, step=step, metrics=metrics, skipped=list(data.skipped))


def resume_from(state: dict[str, Any] | None, *, nets: Nets, data: TrainData, info: DistInfo, device: torch.device) -> int:
    """Return the step to start from: 0 for a new run, else the checkpoint's, with nets and the data position restored."""
    if state is None:
        return 0
    nets.restore(state, rank=info.rank, device=device)
    positions = state["data"]
    if positions.shape[0] == info.world:
        data.load_state(positions[info.rank].tolist())
    else:
        log.warning("checkpoint has data positions of %d ranks, now %d: starting the next epoch", positions.shape[0], info.world)
        data.load_state([0, int(positions[:, 1::2].max())])
    return int(state["step"])


class RateWindow:
    """Steps per second since the last logged step, and the time left at the run's average rate."""

    def __init__(self, *, start_step: int) -> None:
        self.run_start, self.run_step = time.perf_counter(), start_step
        self.window_start, self.window_step = self.run_start, start_step

    def rate(self, step: int) -> float:
        """Return steps/s since the last call (or the start), and start a new window."""
        now = time.perf_counter()
        elapsed = now - self.window_start
        rate = (step - self.window_step) / elapsed if elapsed > 0 else 0.0
        self.window_start, self.window_step = now, step
        return rate

    def eta(self, step: int, *, total: int) -> float:
        """Return the seconds left at this run's average rate so far (NaN before the first step)."""
        done = step - self.run_step
        return (time.perf_counter() - self.run_start) / done * (total - step) if done else math.nan
