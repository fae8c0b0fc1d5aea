"""THA1's building blocks: convolutions without bias, InstanceNorm2d(affine), ReLU, He init.

At the defaults (64 base channels, 3 downsamplings, 6 residual blocks) these are
exactly THA1's layers; the widths follow `base_channels * 2**level` so smaller
networks for tests keep the same shape of computation.
"""
from __future__ import annotations

import torch
from torch import nn


def he_init(module: nn.Module) -> None:
    """He (Kaiming normal, fan-in, ReLU gain) initialisation of every conv weight; THA1's choice."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")


def conv7(in_channels: int, out_channels: int) -> nn.Conv2d:
    """7x7 convolution, stride 1, padding 3, no bias (used for blocks and for the output heads)."""
    return nn.Conv2d(in_channels, out_channels, kernel_size=7, stride=1, padding=3, bias=False)


def conv3(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1, bias=False)


class InstanceNorm2d(nn.InstanceNorm2d):
    """nn.InstanceNorm2d (same parameters, keys and results within rounding) that can keep a
    channels_last input channels_last.

    torch's instance_norm views its input as (1, B*C, H, W) NCHW-contiguous, so in a channels_last
    network every norm costs two layout copies: to NCHW here and back to channels_last at the next
    convolution. The other way: statistics in fp32 (var_mean over H, W), then (x - mean) * scale +
    shift in fp32, cast back to x's dtype; every op keeps x's layout. Under torch.compile that is
    one reduction and one fused pointwise kernel, and the copies are gone. In eager mode it is
    several passes with fp32 temporaries, which for a bf16 activation move more bytes than the
    two copies do, so:

      keep_channels_last = "compiled"  the layout-keeping form while torch.compile traces (default)
                           "always"    also in eager mode
                           "never"     torch's kernel only

    A class attribute so that bench/bench_train.py can measure each choice; inputs that are not
    channels_last (NCHW training, inference, ONNX export) always take torch's kernel.
    """

    keep_channels_last = "compiled"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mode = type(self).keep_channels_last
        if (mode == "never" or x.dim() != 4 or x.is_contiguous()
                or not x.is_contiguous(memory_format=torch.channels_last)
                or (mode == "compiled" and not torch.compiler.is_compiling())):
            return super().forward(x)
        xf = x.float()
        var, mean = torch.var_mean(xf, dim=(2, 3), keepdim=True, correction=0)
        scale = torch.rsqrt(var + self.eps)
        if self.affine:
            scale = scale * self.weight.float()[None, :, None, None]
            return torch.addcmul(self.bias.float()[None, :, None, None], xf - mean, scale).to(x.dtype)
        return ((xf - mean) * scale).to(x.dtype)


class PoseNorm(nn.Module):
    """InstanceNorm(affine) whose output is then scaled and shifted by the pose (FiLM):
    IN(x) * (1 + gamma(pose)) + beta(pose), gamma and beta linear in the pose, zero at initialisation.

    A pose given as constant planes and convolved is a constant per channel away from the
    border, which InstanceNorm's mean subtraction removes; applied after the normalisation
    the pose reaches every pixel.
    """

    def __init__(self, channels: int, pose_dim: int):
        super().__init__()
        self.norm = InstanceNorm2d(channels, affine=True)
        self.film = nn.Linear(pose_dim, 2 * channels)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)

    def forward(self, x: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.film(pose.to(x.dtype)).chunk(2, dim=1)
        return self.norm(x) * (1 + gamma[:, :, None, None]) + beta[:, :, None, None]


def norm(channels: int, pose_dim: int = 0) -> nn.Module:
    """THA1's InstanceNorm2d(affine); a PoseNorm when `pose_dim` > 0."""
    return PoseNorm(channels, pose_dim) if pose_dim else InstanceNorm2d(channels, affine=True)


class CondSequential(nn.Sequential):
    """nn.Sequential that hands `pose` to its PoseNorm layers (and pose-aware children)."""

    def forward(self, x: torch.Tensor, pose: torch.Tensor | None = None) -> torch.Tensor:
        for layer in self:
            x = layer(x, pose) if isinstance(layer, (PoseNorm, CondSequential, ResBlock)) else layer(x)
        return x


class Conv7Block(CondSequential):
    """conv 7x7 -> InstanceNorm(affine) -> ReLU."""

    def __init__(self, in_channels: int, out_channels: int, pose_dim: int = 0):
        super().__init__(conv7(in_channels, out_channels), norm(out_channels, pose_dim), nn.ReLU(inplace=True))


class Down(CondSequential):
    """conv 4x4 stride 2 pad 1 (halves the size) -> IN -> ReLU; `out_channels` defaults to 2*in."""

    def __init__(self, in_channels: int, out_channels: int | None = None, pose_dim: int = 0):
        out_channels = out_channels or 2 * in_channels
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size=4, stride=2, padding=1, bias=False),
            norm(out_channels, pose_dim),
            nn.ReLU(inplace=True),
        )


class Up(CondSequential):
    """transposed conv 4x4 stride 2 pad 1 (doubles the size) -> IN -> ReLU."""

    def __init__(self, in_channels: int, out_channels: int, pose_dim: int = 0):
        super().__init__(
            nn.ConvTranspose2d(in_channels, out_channels, kernel_size=4, stride=2, padding=1, bias=False),
            norm(out_channels, pose_dim),
            nn.ReLU(inplace=True),
        )


class ResBlock(nn.Module):
    """x + IN(conv3(ReLU(IN(conv3(x)))))."""

    def __init__(self, channels: int, pose_dim: int = 0):
        super().__init__()
        self.body = CondSequential(
            conv3(channels, channels), norm(channels, pose_dim), nn.ReLU(inplace=True),
            conv3(channels, channels), norm(channels, pose_dim),
        )

    def forward(self, x: torch.Tensor, pose: torch.Tensor | None = None) -> torch.Tensor:
        return x + self.body(x, pose)


def _check_size(image_size: int, num_downsample: int) -> None:
    if image_size % (2 ** num_downsample):
        raise ValueError(f"image_size {image_size} must be divisible by 2**num_downsample = {2 ** num_downsample}")


class EncoderDecoder(nn.Module):
    """Conv7Block(in->b); n x Down; k x ResBlock; n x Up back to b channels at full size.

    THA1: b=64, n=3 (64->128->256->512, 256->32 px), k=6, output (B, 64, 256, 256).
    With `pose_dim` > 0 every normalisation is a PoseNorm and forward needs the pose.
    """

    def __init__(self, in_channels: int, image_size: int = 256, base_channels: int = 64,
                 num_downsample: int = 3, num_res_blocks: int = 6, pose_dim: int = 0):
        super().__init__()
        _check_size(image_size, num_downsample)
        b, p = base_channels, pose_dim
        layers: list[nn.Module] = [Conv7Block(in_channels, b, p)]
        for i in range(num_downsample):
            layers.append(Down(b * 2 ** i, b * 2 ** (i + 1), p))
        top = b * 2 ** num_downsample
        layers += [ResBlock(top, p) for _ in range(num_res_blocks)]
        for i in range(num_downsample, 0, -1):
            layers.append(Up(b * 2 ** i, b * 2 ** (i - 1), p))
        self.body = CondSequential(*layers)
        self.out_channels = b
        self.pose_dim = pose_dim

    def forward(self, x: torch.Tensor, pose: torch.Tensor | None = None) -> torch.Tensor:
        if self.pose_dim and (pose is None or pose.shape[-1] != self.pose_dim):
            raise ValueError(f"this encoder-decoder's normalisations need a (B, {self.pose_dim}) pose")
        return self.body(x, pose)


class UNet(nn.Module):
    """The encoder above; each decoder level concatenates the encoder feature of its resolution.

    THA1: Up(512->256); Up(256+256->128); Up(128+128->64); Conv7Block(64+64->64).
    With `pose_dim` > 0 every normalisation is a PoseNorm and forward needs the pose.
    """

    def __init__(self, in_channels: int, image_size: int = 256, base_channels: int = 64,
                 num_downsample: int = 3, num_res_blocks: int = 6, pose_dim: int = 0):
        super().__init__()
        _check_size(image_size, num_downsample)
        b, n, p = base_channels, num_downsample, pose_dim
        self.first = Conv7Block(in_channels, b, p)
        self.downs = nn.ModuleList(Down(b * 2 ** i, b * 2 ** (i + 1), p) for i in range(n))
        self.res = CondSequential(*[ResBlock(b * 2 ** n, p) for _ in range(num_res_blocks)])
        ups = []
        for i in range(n, 0, -1):
            cin = b * 2 ** i if i == n else 2 * b * 2 ** i  # deeper levels see [up, skip]
            ups.append(Up(cin, b * 2 ** (i - 1), p))
        self.ups = nn.ModuleList(ups)
        self.last = Conv7Block(2 * b, b, p)
        self.out_channels = b
        self.pose_dim = pose_dim

    def forward(self, x: torch.Tensor, pose: torch.Tensor | None = None) -> torch.Tensor:
        if self.pose_dim and (pose is None or pose.shape[-1] != self.pose_dim):
            raise ValueError(f"this U-Net's normalisations need a (B, {self.pose_dim}) pose")
        skips = [self.first(x, pose)]
        for down in self.downs:
            skips.append(down(skips[-1], pose))
        y = self.res(skips.pop(), pose)
        for i, up in enumerate(self.ups):
            if i > 0:
                y = torch.cat([y, skips.pop()], dim=1)
            y = up(y, pose)
        return self.last(torch.cat([y, skips.pop()], dim=1), pose)


def pose_planes(image: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
    """Concatenate each pose value, broadcast to a (H, W) plane, to the image: (B, C+P, H, W)."""
    if pose.dim() != 2 or pose.shape[0] != image.shape[0]:
        raise ValueError(f"pose must be (B, P) with B={image.shape[0]}, got {tuple(pose.shape)}")
    b, _, h, w = image.shape
    planes = pose.to(image.dtype)[:, :, None, None].expand(b, pose.shape[1], h, w)
    return torch.cat([image, planes], dim=1)


class ArchConfigMixin:
    """Records the constructor keywords so io.save_weights can store them as metadata."""

    kind: str = ""

    def _record(self, image_size: int, base_channels: int, num_downsample: int, num_res_blocks: int) -> None:
        self.config = dict(image_size=int(image_size), base_channels=int(base_channels),
                           num_downsample=int(num_downsample), num_res_blocks=int(num_res_blocks))
