"""HRNet (Sun et al., "Deep High-Resolution Representation Learning"), plain PyTorch, written from its spec
(smpler-facts.md section 2.1).

A stem (two stride-2 3x3 convolutions, 64 channels) and four Bottlenecks (256 channels) feed three stages of
parallel branches at strides 4/8/16/32 with ``width * (1, 2, 4, 8)`` channels; every module runs BasicBlocks
per branch and then fuses all branches into each other (sum, ReLU). As in SMPLer the last module keeps all
four outputs and there is no heatmap head: :meth:`HRNet.forward` returns the four maps, high resolution first.

Parameter names are those of the official pose checkpoints (``pose_hrnet_w32_256x256.pth``,
``pose_hrnet_w48_256x192.pth``), which initialise training through :func:`load_hrnet_weights`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn

from hmr.models.weights import CheckpointMismatchError, checkpoint_state, load_network_state, torch_load

STEM_CHANNELS = 64
BOTTLENECK_EXPANSION = 4


@dataclass
class HRNetConfig:
    """HRNet-W``width``: the official W32/W48 pose nets with the defaults (1, 4, 3 modules of 4 blocks)."""

    width: int = 32
    stem_blocks: int = 4  # Bottlenecks of layer1
    num_modules: tuple[int, int, int] = (1, 4, 3)  # multi-resolution modules of stages 2, 3, 4
    num_blocks: int = 4  # BasicBlocks per branch in every module
    bn_momentum: float = 0.1

    @property
    def channels(self) -> tuple[int, int, int, int]:
        return tuple(self.width * 2**i for i in range(4))


def _bn(c: int, cfg: HRNetConfig) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, momentum=cfg.bn_momentum)


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride, 1, bias=False)


class BasicBlock(nn.Module):
    def __init__(self, c: int, cfg: HRNetConfig):
        super().__init__()
        self.conv1, self.bn1 = _conv3x3(c, c), _bn(c, cfg)
        self.conv2, self.bn2 = _conv3x3(c, c), _bn(c, cfg)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + x)


class Bottleneck(nn.Module):
    def __init__(self, cin: int, planes: int, cfg: HRNetConfig):
        super().__init__()
        cout = planes * BOTTLENECK_EXPANSION
        self.conv1, self.bn1 = nn.Conv2d(cin, planes, 1, bias=False), _bn(planes, cfg)
        self.conv2, self.bn2 = _conv3x3(planes, planes), _bn(planes, cfg)
        self.conv3, self.bn3 = nn.Conv2d(planes, cout, 1, bias=False), _bn(cout, cfg)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), _bn(cout, cfg)) if cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


def _down(cin: int, cout: int, cfg: HRNetConfig, relu: bool) -> nn.Sequential:
    """A stride-2 3x3 convolution + BN (+ ReLU)."""
    layers = [_conv3x3(cin, cout, 2), _bn(cout, cfg)]
    return nn.Sequential(*layers, nn.ReLU(inplace=True)) if relu else nn.Sequential(*layers)


def _fuse(i: int, j: int, channels: tuple[int, ...], cfg: HRNetConfig) -> nn.Module | None:
    """Branch j -> branch i: 1x1 conv + BN + nearest upsampling from lower resolutions; from higher ones, i - j
    stride-2 convolutions (ReLU between them, none after the last)."""
    if i == j:
        return None
    if j > i:
        return nn.Sequential(
            nn.Conv2d(channels[j], channels[i], 1, bias=False), _bn(channels[i], cfg),
            nn.Upsample(scale_factor=2 ** (j - i), mode="nearest"),
        )  # fmt: skip
    steps = [_down(channels[j], channels[j], cfg, relu=True) for _ in range(i - j - 1)]
    return nn.Sequential(*steps, _down(channels[j], channels[i], cfg, relu=False))


class HighResolutionModule(nn.Module):
    """BasicBlocks on every branch, then every branch's output summed into every other's."""

    def __init__(self, channels: tuple[int, ...], cfg: HRNetConfig):
        super().__init__()
        n = len(channels)
        self.branches = nn.ModuleList(
            nn.Sequential(*(BasicBlock(c, cfg) for _ in range(cfg.num_blocks))) for c in channels
        )
        self.fuse_layers = nn.ModuleList(nn.ModuleList(_fuse(i, j, channels, cfg) for j in range(n)) for i in range(n))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs, strict=True)]
        out = []
        for fuse in self.fuse_layers:
            y = sum(x if f is None else f(x) for f, x in zip(fuse, xs, strict=True))
            out.append(self.relu(y))
        return out


def _transition(before: tuple[int, ...], after: tuple[int, ...], cfg: HRNetConfig) -> nn.ModuleList:
    """Existing branches keep their maps (a 3x3 conv only where the width changes); each new branch comes
    from the lowest-resolution one through stride-2 convolutions."""
    layers: list[nn.Module | None] = []
    for i, c in enumerate(after):
        if i < len(before):
            same = before[i] == c
            layers.append(None if same else nn.Sequential(_conv3x3(before[i], c), _bn(c, cfg), nn.ReLU(inplace=True)))
        else:
            steps = i + 1 - len(before)
            layers.append(nn.Sequential(*(
                _down(before[-1], c if k == steps - 1 else before[-1], cfg, relu=True) for k in range(steps)
            )))  # fmt: skip
    return nn.ModuleList(layers)


class HRNet(nn.Module):
    """(B, 3, H, W) -> four maps [(B, W, H/4, W/4), (B, 2W, H/8, W/8), (B, 4W, H/16, W/16), (B, 8W, H/32, W/32)]."""

    def __init__(self, cfg: HRNetConfig):
        super().__init__()
        self.config = cfg
        self.conv1, self.bn1 = _conv3x3(3, STEM_CHANNELS, 2), _bn(STEM_CHANNELS, cfg)
        self.conv2, self.bn2 = _conv3x3(STEM_CHANNELS, STEM_CHANNELS, 2), _bn(STEM_CHANNELS, cfg)
        self.relu = nn.ReLU(inplace=True)
        stem_out = STEM_CHANNELS * BOTTLENECK_EXPANSION
        self.layer1 = nn.Sequential(
            *(Bottleneck(STEM_CHANNELS if k == 0 else stem_out, STEM_CHANNELS, cfg) for k in range(cfg.stem_blocks))
        )
        widths: tuple[int, ...] = (stem_out,)
        for stage, modules in enumerate(cfg.num_modules, start=2):
            branches = cfg.channels[:stage]
            setattr(self, f"transition{stage - 1}", _transition(widths, branches, cfg))
            setattr(
                self, f"stage{stage}", nn.Sequential(*(HighResolutionModule(branches, cfg) for _ in range(modules)))
            )
            widths = branches
        self._init_weights()

    @property
    def final_module(self) -> HighResolutionModule:
        """The last multi-resolution module (its fuse layers make the four outputs)."""
        return getattr(self, f"stage{len(self.config.num_modules) + 1}")[-1]

    def _init_weights(self) -> None:
        """HRNet's initialisation: convolutions N(0, 0.001), batch norms 1 / 0."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.001)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        xs = [self.layer1(x)]
        for stage in range(2, 2 + len(self.config.num_modules)):
            transition = getattr(self, f"transition{stage - 1}")
            # New branches grow from the lowest-resolution map of the previous stage.
            sources = [xs[min(i, len(xs) - 1)] for i in range(len(transition))]
            xs = [x if t is None else t(x) for t, x in zip(transition, sources, strict=True)]
            xs = getattr(self, f"stage{stage}")(xs)
        return xs


def load_hrnet_weights(backbone: HRNet, path: str | os.PathLike) -> list[str]:
    """Official HRNet pose weights (a raw state dict or ``{'state_dict': ...}``) into ``backbone``, for training.

    Their heatmap head (``final_layer.*``) is ignored. The pose nets keep only the highest-resolution output of
    their last module, so its fuse layers into branches 1-3 are not in the file: they keep their initialisation
    and are returned. Any other missing, unexpected or mis-shaped key raises
    :class:`~hmr.models.weights.CheckpointMismatchError`.
    """
    state = checkpoint_state(torch_load(path))
    if state is None:
        raise CheckpointMismatchError(f"{path}: expected a state_dict of HRNet tensors")
    state = {k: v for k, v in state.items() if not k.startswith("final_layer.")}
    modules = backbone.config.num_modules
    final = f"stage{len(modules) + 1}.{modules[-1] - 1}.fuse_layers."
    own = backbone.state_dict()
    kept = [k for k in own if k not in state and k.startswith(final) and not k.startswith(final + "0.")]
    load_network_state(backbone, {**state, **{k: own[k] for k in kept}}, str(path))
    return kept
