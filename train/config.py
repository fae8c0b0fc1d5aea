"""The settings of one training run: what the user chose (TrainConfig), the defaults filled in from
the data and THA1 (`resolve`), and which settings a re-run may change without invalidating the
checkpoint (`resume_conflicts`). The run folder's config.json is written and read by runstate.py."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .augment import parse_augment
from .errors import TrainError
from .tasks import (DEFAULT_BATCH, DEFAULT_EXAMPLES, MORPHER_REGION_WEIGHT, MORPHER_TRAIN_DEFAULTS, TASKS,
                    effective_augment)

# settings a re-run may change without invalidating the checkpoint
RESUMABLE_CHANGES = {"examples", "checkpoint_every", "val_every", "val_examples", "num_samples", "log_every",
                     "device", "precision", "channels_last", "compile", "workers", "quiet", "data",
                     "vgg_weights", "random_vgg", "init", "rotator", "skip_bad_shards"}


@dataclass
class TrainConfig:
    kind: str
    data: str
    out: str
    loss: str = "l1"
    batch_size: int | None = None  # THA1's per kind/loss when None
    examples: int | None = None  # budget in examples seen; THA1's when None
    lr: float = 1e-4
    beta1: float = 0.5
    beta2: float = 0.999
    seed: int = 0
    checkpoint_every: int = 50_000
    val_every: int = 50_000
    val_examples: int = 500
    num_samples: int = 8
    log_every: int = 1_000
    image_size: int | None = None  # from the data when None
    base_channels: int = 64
    num_downsample: int = 3
    num_res_blocks: int = 6
    device: str = "auto"
    precision: str = "auto"
    channels_last: bool | None = None
    compile: bool = False
    workers: int | None = None
    vgg_weights: str | None = None
    random_vgg: bool = False  # tests only: perceptual loss with a randomly initialised VGG16
    init: str | None = None
    rotator: str | None = None
    grid_convention: str | None = None  # rotator only: "thactl" | "tha1"; None = --init's, else thactl's
    quiet: bool = False
    skip_bad_shards: bool = False  # leave out unreadable/corrupt shards (logged) instead of stopping
    pose_film: bool | None = None  # morpher only; None = tasks.MORPHER_TRAIN_DEFAULTS
    head_init_scale: float | None = None  # morpher only; None = tasks.MORPHER_TRAIN_DEFAULTS
    region_weight: float | None = None  # morpher only; None = tasks.MORPHER_REGION_WEIGHT
    augment: str | None = None  # "mirror,colour", "none", ...; None = tasks.DEFAULT_AUGMENT[kind]
    unet: bool | None = None  # morpher only; None = tasks.MORPHER_TRAIN_DEFAULTS

    def arch(self) -> dict:
        arch = dict(image_size=self.image_size, base_channels=self.base_channels,
                    num_downsample=self.num_downsample, num_res_blocks=self.num_res_blocks)
        if self.kind == "rotator":
            arch["grid_convention"] = self.grid_convention or "thactl"
        if self.kind == "morpher":
            for key, default in MORPHER_TRAIN_DEFAULTS.items():
                value = getattr(self, key)
                arch[key] = default if value is None else value
        return arch

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def resolve(cfg: TrainConfig, image_size: int, world_size: int) -> None:
    """Fill in the defaults (image size from the data, THA1's batch and budget) and check the settings."""
    if cfg.kind not in TASKS:
        raise TrainError(f"unknown network {cfg.kind!r} (morpher, rotator or combiner)")
    if cfg.image_size is not None and cfg.image_size != image_size:
        raise TrainError(f"{cfg.data}: the data is {image_size} px, --image-size says {cfg.image_size}")
    cfg.image_size = image_size
    if (cfg.kind, cfg.loss) not in DEFAULT_BATCH:
        raise TrainError(f"loss {cfg.loss!r} is not available for the {cfg.kind}")
    if cfg.batch_size is None:
        cfg.batch_size = DEFAULT_BATCH[(cfg.kind, cfg.loss)]
    if cfg.examples is None:
        cfg.examples = DEFAULT_EXAMPLES[cfg.kind]
    if cfg.batch_size < 1 or cfg.examples < 1:
        raise TrainError("--batch-size and --examples must be positive")
    if cfg.batch_size % world_size:
        raise TrainError(f"--batch-size {cfg.batch_size} is not divisible by the {world_size} "
                         "processes (the global batch is split evenly)")
    if image_size % (2 ** cfg.num_downsample):
        raise TrainError(f"image size {image_size} is not divisible by 2**{cfg.num_downsample}")
    parse_augment(cfg.augment)  # a misspelt transform stops here, before the run folder is made


def resolve_grid_convention(cfg: TrainConfig, saved: dict | None, init_config: dict | None) -> None:
    """Set cfg.grid_convention: the run's own on resume (runs saved before the setting: thactl), else
    --init's weights', else thactl's; an explicit --grid-convention must agree with the weights it
    continues from."""
    if cfg.kind != "rotator":
        if cfg.grid_convention is not None:
            raise TrainError("--grid-convention applies to the rotator only")
        return
    if saved is not None:
        inherited, source = saved.get("grid_convention") or "thactl", "the run being resumed"
        saved["grid_convention"] = inherited
    elif init_config is not None:
        inherited, source = init_config.get("grid_convention") or "thactl", f"--init {cfg.init}"
    else:
        inherited, source = None, None
    if cfg.grid_convention is None:
        cfg.grid_convention = inherited or "thactl"
    elif inherited is not None and cfg.grid_convention != inherited:
        raise TrainError(f"--grid-convention {cfg.grid_convention}: {source} was trained with the "
                         f"{inherited} convention; leave the option out to keep it")


# the morpher options that decide its layers (and so which weights fit it)
MORPHER_LAYER_OPTIONS = ("pose_film", "unet")


def resolve_morpher_options(cfg: TrainConfig, network: dict | None) -> None:
    """The morpher's layer options left out (None) become those of `network`: the --init weights' config
    of a fresh run (THA1's files: THA1's layers, so `--init THA1DIR` needs no --no-unet --no-pose-film),
    or the config of the checkpoint a re-run continues."""
    if cfg.kind != "morpher" or network is None:
        return
    for key in MORPHER_LAYER_OPTIONS:
        if getattr(cfg, key) is None and network.get(key) is not None:
            setattr(cfg, key, bool(network[key]))


def resume_conflicts(saved: dict, cfg: TrainConfig) -> list[str]:
    """'name: saved -> now' for each setting that differs from the saved run and may not change.
    A morpher option left out (None) equals its default given explicitly."""
    now = cfg.as_dict()
    return [f"{k}: {saved.get(k)!r} -> {now[k]!r}" for k in now
            if k not in RESUMABLE_CHANGES
            and _effective(cfg.kind, k, saved.get(k)) != _effective(cfg.kind, k, now[k])]


def _effective(kind: str, key: str, value):
    """The value a setting has in training: a morpher option's None is its default, and so is --augment's."""
    if key == "augment":
        return parse_augment(effective_augment(kind, value))
    if kind != "morpher" or value is not None:
        return value
    if key in MORPHER_TRAIN_DEFAULTS:
        return MORPHER_TRAIN_DEFAULTS[key]
    return MORPHER_REGION_WEIGHT if key == "region_weight" else None
