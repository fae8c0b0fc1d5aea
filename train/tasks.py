"""What differs between training the morpher, the rotator and the combiner.

Each task knows which images of a shard example are its input and target, which pose values it
reads, how its loss is formed from the network's outputs, and which images to show in sample
grids. The loop (loop.py) knows none of this.

  morpher : rest_image   + pose[3:6] -> morphed_image ; loss L1(output) + region_weight x L1 over the
            changed region (evaluate.changed_region of rest and target; THA1: region_weight 0)
  rotator : morphed_image + pose[0:3] -> posed_image  ; loss Σ over the Pumarola and Zhou outputs of
            L1 (+ perceptual, w = 1/5)
  combiner: morphed_image + pose[0:3] -> frozen trained rotator (computed on the fly, no grad)
            -> combiner(pumarola, zhou, pose[0:3]) -> posed_image ; loss L1 (+ perceptual, w = 1/25)

Training batches may be augmented (augment.py; DEFAULT_AUGMENT per network): input, target and pose
together, before the network sees them; validation never is.
"""
from __future__ import annotations

import torch
from torch import nn

from models import NETWORKS
from .augment import Augment, parse_augment
from .errors import TrainError
from .losses import PERCEPTUAL_WEIGHT, PerceptualLoss, l1_loss, region_l1_loss

# THA1's budgets (examples seen) and batch sizes per loss
DEFAULT_EXAMPLES = {"morpher": 3_000_000, "rotator": 3_000_000, "combiner": 1_500_000}
DEFAULT_BATCH = {
    ("morpher", "l1"): 25,
    ("rotator", "l1"): 25, ("rotator", "perceptual"): 8,
    ("combiner", "l1"): 20, ("combiner", "perceptual"): 12,
}
LOSSES = ("l1", "perceptual")
# the morpher's options beyond THA1 (models.morpher.FaceMorpher) that `thactl train` uses unless told
# otherwise; THA1's own layers are pose_film=False, head_init_scale=1.0, unet=False (README: why these defaults)
MORPHER_TRAIN_DEFAULTS = {"pose_film": True, "head_init_scale": 0.01, "unet": True}
# weight of the morpher's changed-region L1 term unless told otherwise (THA1: 0, whole-image L1 only)
MORPHER_REGION_WEIGHT = 1.0
# training-time augmentation (augment.py) unless told otherwise: the morpher learns from a few characters
# and needs new ones; the rotator and the combiner train as THA1 did
DEFAULT_AUGMENT = {"morpher": "mirror,colour", "rotator": "none", "combiner": "none"}


class Task:
    kind = ""
    input_key = ""
    target_key = ""
    pose_slice = slice(0, 3)
    output_names: tuple[str, ...] = ("output",)
    main_output = ""  # the output validation's "l1" reports (output_names[0] when empty)

    #: the pose-schema input this network reads (face: the morpher; rotation: the rotator, the combiner)
    schema_input = "rotation"

    def __init__(self, arch: dict, loss: str = "l1", vgg: nn.Module | None = None,
                 augment: Augment | None = None, schema=None):
        if (self.kind, loss) not in DEFAULT_BATCH:
            raise TrainError(f"loss {loss!r} is not defined for the {self.kind} "
                             f"(THA1 uses: {', '.join(l for (k, l) in DEFAULT_BATCH if k == self.kind)})")
        self.main_output = self.main_output or self.output_names[0]
        self.arch = dict(arch)
        self.mirror = None
        self.schema = schema        # recorded in the weight file (models.io.schema_metadata)
        if schema is not None:      # a pose schema's data: its inputs by position (docs/pose-schemas.md)
            self.pose_slice = schema.indices(self.schema_input)
            self.arch["pose_size"] = len(self.pose_slice)
            self.mirror = (schema.size, schema.mirror_order(), schema.mirror_sign())
        self.loss_name = loss
        self.perceptual = None
        self.augment = augment
        if loss == "perceptual":
            if vgg is None:
                raise TrainError("the perceptual loss needs VGG16 weights (--vgg-weights FILE)")
            self.perceptual = PerceptualLoss(vgg, PERCEPTUAL_WEIGHT[self.kind])

    # --- set-up
    def build_model(self) -> nn.Module:
        return NETWORKS[self.kind](**self.arch)

    def to(self, device) -> "Task":
        """Move the task's own frozen modules (VGG, the combiner's rotator) to the device."""
        if self.perceptual is not None:
            self.perceptual = device.prepare_model(self.perceptual)
        return self

    # --- per batch
    def inputs(self, batch: dict, device, seen: int | None = None):
        """(input image, pose part, target image) on the device; augmented (augment.py) when the run
        augments and `seen`, the examples seen before this batch, is given (training, not validation)."""
        image, pose, target = device.to(batch[self.input_key]), device.to(batch["pose"][:, self.pose_slice]), \
            device.to(batch[self.target_key])
        if self.augment and seen is not None:
            params = self.augment.params(seen, image.shape[0] * device.world_size, device.rank, device.world_size)
            (image, target), pose = self.augment.apply([image, target], pose, self.pose_slice, params,
                                                       self.mirror)
        return image, pose, target

    def outputs(self, model: nn.Module, image: torch.Tensor, pose: torch.Tensor) -> list[torch.Tensor]:
        """The images the loss and the grids look at; [0] is the network's output image."""
        return [model(image, pose)[0]]

    def image_loss(self, output: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict]:
        l1 = l1_loss(output, target)
        if self.perceptual is None:
            return l1, {"l1": l1.detach()}
        p = self.perceptual(output.float(), target.float())
        return l1 + p, {"l1": l1.detach(), "perceptual": p.detach()}

    def loss(self, outs: list[torch.Tensor], target: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """Loss to minimise and its named parts (detached)."""
        return self.image_loss(outs[0], target)

    def step(self, model, batch, device, seen: int | None = None) -> tuple[torch.Tensor, dict]:
        image, pose, target = self.inputs(batch, device, seen)
        with device.autocast():  # the perceptual VGG runs under autocast too; L1 sums are taken in fp32
            outs = self.outputs(model, image, pose)
            return self.loss([o.float() for o in outs], target)


class MorpherTask(Task):
    kind = "morpher"
    input_key, target_key = "rest_image", "morphed_image"
    pose_slice = slice(3, 6)
    schema_input = "face"
    output_names = ("morpher",)

    def __init__(self, arch, loss="l1", vgg=None, augment=None, region_weight: float = MORPHER_REGION_WEIGHT,
                 schema=None):
        super().__init__(arch, loss, vgg, augment, schema)
        if region_weight < 0:
            raise TrainError(f"--region-weight must be >= 0, got {region_weight}")
        self.region_weight = float(region_weight)

    def step(self, model, batch, device, seen=None):
        """THA1's L1 plus region_weight x the L1 over the pixels the target changes (eyes, mouth):
        they are a few percent of the image, so whole-image L1 alone first rewards copying the input."""
        from .evaluate import changed_region

        image, pose, target = self.inputs(batch, device, seen)
        with device.autocast():
            output = self.outputs(model, image, pose)[0].float()
        loss, parts = self.image_loss(output, target)
        if self.region_weight:
            region = region_l1_loss(output, target, changed_region(image, target))
            loss = loss + self.region_weight * region
            parts["region_l1"] = region.detach()
        return loss, parts


class RotatorTask(Task):
    kind = "rotator"
    input_key, target_key = "morphed_image", "posed_image"
    pose_slice = slice(0, 3)
    output_names = ("pumarola", "zhou")

    def outputs(self, model, image, pose):
        out = model(image, pose)
        return [out[0], out[1]]

    def loss(self, outs, target):
        lp, parts_p = self.image_loss(outs[0], target)
        lz, parts_z = self.image_loss(outs[1], target)
        parts = {f"{k}_pumarola": v for k, v in parts_p.items()}
        parts.update({f"{k}_zhou": v for k, v in parts_z.items()})
        return lp + lz, parts


class CombinerTask(Task):
    """Trains on a frozen rotator's outputs, computed on the fly (see README for the trade-off)."""

    kind = "combiner"
    input_key, target_key = "morphed_image", "posed_image"
    pose_slice = slice(0, 3)
    output_names = ("pumarola", "zhou", "combiner")
    main_output = "combiner"

    def __init__(self, arch, loss="l1", vgg=None, augment=None, rotator: nn.Module | None = None,
                 schema=None):
        super().__init__(arch, loss, vgg, augment, schema)
        if rotator is None:
            raise TrainError("training the combiner needs a trained rotator: --rotator RUN_DIR_OR_FILE")
        if rotator.config["image_size"] != arch["image_size"]:
            raise TrainError(f"the rotator was trained at {rotator.config['image_size']} px, "
                             f"the data is {arch['image_size']} px")
        self.rotator = rotator.eval()
        for p in self.rotator.parameters():
            p.requires_grad_(False)

    def to(self, device):
        super().to(device)
        self.rotator = device.prepare_model(self.rotator)
        return self

    def outputs(self, model, image, pose):
        with torch.no_grad():
            pumarola, zhou = self.rotator(image, pose)[:2]
        return [pumarola, zhou, model(pumarola, zhou, pose)[0]]

    def loss(self, outs, target):
        return self.image_loss(outs[2], target)


TASKS = {"morpher": MorpherTask, "rotator": RotatorTask, "combiner": CombinerTask}


def make_task(cfg) -> Task:
    """The task of `cfg.kind` with what it needs loaded: VGG16 for the perceptual loss (seeded by
    cfg.seed when random), the frozen trained rotator for the combiner."""
    vgg = None
    if cfg.loss == "perceptual":
        from models.vgg import VGGWeightsError, load_vgg16_features
        try:
            vgg = load_vgg16_features(cfg.vgg_weights, random_init=cfg.random_vgg, seed=cfg.seed)
        except VGGWeightsError as e:
            raise TrainError(str(e)) from None
    extra = {"augment": Augment(parse_augment(effective_augment(cfg.kind, cfg.augment)), cfg.seed)}
    if cfg.kind == "combiner":
        if not cfg.rotator:
            raise TrainError("training the combiner needs a trained rotator: --rotator RUN_DIR_OR_FILE")
        from models.io import WeightsError, load_weights
        try:
            extra["rotator"] = load_weights(cfg.rotator, "rotator")
        except WeightsError as e:
            raise TrainError(str(e)) from None
    if cfg.kind == "morpher":
        extra["region_weight"] = MORPHER_REGION_WEIGHT if cfg.region_weight is None else cfg.region_weight
    schema = data_schema(cfg.data)
    if schema is not None:
        extra["schema"] = schema
    return TASKS[cfg.kind](cfg.arch(), cfg.loss, vgg, **extra)


def data_schema(data):
    """The pose schema of a data folder's training shards (core.poseschema), None for THA1's six."""
    from dataset.errors import DatasetError
    from dataset.shards import ShardReader
    from dataset.torchdata import find_shards

    try:
        files = find_shards(data, "train")
    except DatasetError:
        return None
    with ShardReader(files[0]) as r:
        return r.schema


def effective_augment(kind: str, augment: str | None) -> str:
    """The augmentation a run of `kind` uses: its --augment, or DEFAULT_AUGMENT[kind] when left out."""
    return DEFAULT_AUGMENT[kind] if augment is None else augment
