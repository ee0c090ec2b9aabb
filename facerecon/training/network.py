"""The seeds' encoder-decoder: MobileNetV2 inverted residuals down, transposed convolutions up.

Layer table (Kwon 2021, table 4.1, after Lium's front-and-side network) at 256 px and width 1:

    256x256xC  conv 3x3 /2                  -> 128x128x32
               inverted residual stages /2  -> 64x64x96 -> 32x32x144 -> 16x16x192 -> 8x8x576
               conv 3x3                     -> 8x8x512
               transposed convs, 2 or 3 per scale (the first of each /2 up) -> ... -> 256x256x16
               transposed convs             -> 256x256x3 (position map, linear output)

Here the input size may be 128 too (the bottleneck is then 4x4) and ``width`` scales every channel
count, which is how the CPU model stays small. Stride-1 transposed convolutions use 3x3 kernels
(an even kernel cannot keep the size with symmetric padding); stride-2 ones use 4x4 as in the table.
Input: float in [0, 1], NCHW, C = 3 (one image), 6 (two views) or 3 + K (landmark heatmaps).
"""
from __future__ import annotations

import torch
from torch import nn

ENCODER = (96, 144, 192, 576)      # stage output channels at width 1
BOTTLENECK = 512
DECODER = (256, 128, 64, 32, 16)   # channels after each x2 upsampling, at width 1


def _ch(c: int, width: float) -> int:
    return max(8, int(round(c * width / 8)) * 8)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, 3x3 depthwise, 1x1 linear projection (+ skip when shapes match)."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int = 6):
        super().__init__()
        hidden = cin * expand
        self.skip = stride == 1 and cin == cout
        self.body = nn.Sequential(
            nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = self.body(x)
        return x + y if self.skip else y


def _up(cin: int, cout: int, stride: int, act: bool = True) -> nn.Sequential:
    if stride == 2:
        conv = nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=not act)
    else:
        conv = nn.ConvTranspose2d(cin, cout, 3, 1, 1, bias=not act)
    return nn.Sequential(conv, nn.BatchNorm2d(cout), nn.ReLU(inplace=True)) if act else nn.Sequential(conv)


class PosMapNet(nn.Module):
    """Image (B, C, S, S) in [0, 1] -> position map (B, 3, S, S) in the crop frame, or (volumetric,
    ``out_channels`` = D depth bins, ``out_stride`` 2) occupancy logits (B, D, S/2, S/2)."""

    def __init__(self, in_channels: int = 3, width: float = 1.0, blocks_per_stage: int = 2,
                 convs_per_scale: int = 2, out_channels: int = 3, out_stride: int = 1):
        super().__init__()
        c0 = _ch(32, width)
        layers: list[nn.Module] = [nn.Conv2d(in_channels, c0, 3, 2, 1, bias=False), nn.BatchNorm2d(c0),
                                   nn.ReLU6(inplace=True)]
        cin = c0
        for c in ENCODER:
            cout = _ch(c, width)
            for i in range(blocks_per_stage):
                layers.append(InvertedResidual(cin, cout, 2 if i == 0 else 1))
                cin = cout
        cb = _ch(BOTTLENECK, width)
        layers += [nn.Conv2d(cin, cb, 3, 1, 1, bias=False), nn.BatchNorm2d(cb), nn.ReLU(inplace=True)]
        self.encoder = nn.Sequential(*layers)
        dec: list[nn.Module] = [_up(cb, cb, 1)]
        cin = cb
        # out_stride 2 stops one upsampling early (the volumetric net's depth slices at half resolution)
        for c in DECODER[:len(DECODER) - (out_stride == 2)]:
            cout = _ch(c, width) if c > 16 else max(8, int(16 * width))
            dec.append(_up(cin, cout, 2))
            dec += [_up(cout, cout, 1) for _ in range(convs_per_scale - 1)]
            cin = cout
        dec += [_up(cin, out_channels, 1, act=False)]   # linear: positions, or occupancy logits
        self.decoder = nn.Sequential(*dec)
        self.in_channels = in_channels

    def forward(self, x):
        # inputs in [0, 1]; centring here keeps the exported model's input plain
        return self.decoder(self.encoder((x - 0.5) * 2.0))


def build_network(cfg: dict) -> PosMapNet:
    volume = cfg.get("kind", "posmap") == "volume"
    return PosMapNet(in_channels=int(cfg.get("in_channels", 3)), width=float(cfg.get("width", 1.0)),
                     blocks_per_stage=int(cfg.get("blocks_per_stage", 2)),
                     convs_per_scale=int(cfg.get("convs_per_scale", 2)),
                     out_channels=int(cfg.get("depth_bins", 64)) if volume else 3,
                     out_stride=2 if volume else 1)


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def to_device_layout(x: torch.Tensor) -> torch.Tensor:
    """channels_last: about 1.5x faster convolutions on the CPU (see STACK-NOTES)."""
    return x.contiguous(memory_format=torch.channels_last)
