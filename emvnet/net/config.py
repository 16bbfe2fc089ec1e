"""Frozen configuration of EMVNet and the table of named variants (Sec. 4.3, 4.4, 5.4.3).

Axis letters used in every shape comment of the model code: B batch, n frames, C channels,
D matching candidates (frames x motions x exposures), H, W height and width.

A variant is one small factory below; `VARIANTS` lists them explicitly. A checkpoint's JSON stores
`asdict(config)` and `config_from_dict` rebuilds it with every field typed and unknown keys refused.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal

Task = Literal["rgb", "raw", "isp"]
# The classical merge the output residual is applied to (emvnet.net.model, "Output prior").
Prior = Literal["weighted", "reference"]

# The paper's blind exposure candidates (Sec. 4.3): gains that bring a non-reference frame to the
# reference's units, {1/4, 1/2, 2, 4, 8, 16}. 1/8 and 1/16 are left out as in the paper (footnote 2).
PAPER_EXPOSURES: tuple[float, ...] = (0.25, 0.5, 2.0, 4.0, 8.0, 16.0)


@dataclass(frozen=True)
class FeatureConfig:
    """RRDB feature extractor (Sec. 3.1), weights shared across frames."""

    n_rrdb: int = 12
    filters: int = 32
    growth: int = 16  # ESRGAN's growth is half the trunk width; the paper does not state it
    depthwise: bool = False  # Sec. 5.4.3: depthwise-separable convolutions in the fast variants
    unshuffle: int = 1  # pixel-unshuffle factor at the input (2 in the fast variants)
    stride: int = 1  # extra stride-2 entry convolution(s); features at 1 / (unshuffle * stride)
    gamma_input: bool = True  # also feed x ** (1/2.2): dark detail is visible in the encoded domain


@dataclass(frozen=True)
class VolumeConfig:
    """Matching volume (Sec. 3.2, Eq. 1) and the ablation switches of Table 3."""

    down: int = 4  # volume resolution = feature resolution / down (power of 2)
    match_channels: int = 8  # features are compressed to this width before matching
    volume_channels: int = 8  # width of each candidate's comparison after the split 1x1 conv
    motion_window: int = 36  # input pixels spanned by the motion candidates along each axis
    motion_step: int = 3  # sub-sampled motion (Table 3 last row); 1 = dense (row 6)
    exposures: tuple[float, ...] = PAPER_EXPOSURES  # blind-mode candidates, N_E = len
    use_motion: bool = True  # Table 3: off -> N_M = 1 (zero motion only)
    use_exposure: bool = True  # Table 3: off -> N_E = 1 with gain 1 (no exposure compensation)
    use_mask: bool = True  # Table 3: off -> the gain multiplies saturated pixels too
    dense_motion: bool = False  # Table 3 row 6: every input pixel inside the window
    pool_exposures: bool = False  # fold N_E into channels before the hourglasses (fast variants)

    @property
    def motion_offsets(self) -> tuple[float, ...]:
        """Candidate offsets along one axis, input pixels, symmetric about 0 (mean motion 0)."""
        if not self.use_motion:
            return (0.0,)
        step = 1 if self.dense_motion else self.motion_step
        count = max(1, self.motion_window // step)
        return tuple(step * (k - (count - 1) / 2) for k in range(count))

    @property
    def n_motions(self) -> int:
        return len(self.motion_offsets) ** 2


@dataclass(frozen=True)
class AggregationConfig:
    """Stacked hourglass of dilated 3D convolutions (Sec. 3.3, Fig. 4)."""

    n_hourglass: int = 3
    filters: int = 32
    dilations: tuple[int, int, int] = (1, 2, 3)  # of the 3 stride-2 convolutions, growing with depth
    decoder_filters: int = 32  # 2D decoder that turns each hourglass output into an image


@dataclass(frozen=True)
class ModelConfig:
    name: str
    task: Task
    features: FeatureConfig = field(default_factory=FeatureConfig)
    volume: VolumeConfig = field(default_factory=VolumeConfig)
    aggregation: AggregationConfig = field(default_factory=AggregationConfig)
    # "weighted": `emvnet.merge.fusion`'s deghosted, noise-weighted merge of the flow-aligned frames,
    # what every variant and shipped weight is trained on; "reference": the reference wherever it
    # does not clip (MODEL_CARD.md), which checkpoints that name no prior were trained on
    # (`emvnet.net.checkpoint` reads them so).
    prior: Prior = "weighted"
    tile: int = 512  # engine tile side in input pixels; bounds memory
    overlap: int = 64  # engine tile overlap in input pixels; rounded up to `tile_unit`

    @property
    def input_layout(self) -> Literal["rgb", "rggb"]:
        """The frames it merges: RGB, or packed Bayer raw (raw HDR and E2E-ISP)."""
        return "rgb" if self.task == "rgb" else "rggb"

    @property
    def in_channels(self) -> int:
        return 3 if self.task == "rgb" else 4

    @property
    def out_channels(self) -> int:
        return 4 if self.task == "raw" else 3

    @property
    def out_scale(self) -> int:
        """Output size / input size: 2 for E2E-ISP (packed Bayer in, full-size RGB out)."""
        return 2 if self.task == "isp" else 1

    @property
    def feature_down(self) -> int:
        return self.features.unshuffle * self.features.stride

    @property
    def volume_down(self) -> int:
        """Input pixels per matching-volume pixel."""
        return self.feature_down * self.volume.down

    @property
    def tile_unit(self) -> int:
        """Input pixels per pixel of the deepest hourglass level: tiles start on this grid."""
        return self.volume_down * 8

    @property
    def multiple(self) -> int:
        """Input sizes are padded to a multiple of this inside the model."""
        return self.feature_down

    def __post_init__(self) -> None:
        for factor in (self.features.unshuffle, self.features.stride, self.volume.down):
            assert factor >= 1 and factor & (factor - 1) == 0, f"{self.name}: factors must be powers of 2"
        assert self.aggregation.n_hourglass >= 1, f"{self.name}: at least one hourglass"
        assert self.overlap * 2 < self.tile, f"{self.name}: overlap must be under half the tile"


# ---- the variants: one small factory each -------------------------------------------------------


def _paper(name: str, task: Task, n_rrdb: int, hourglass: int) -> ModelConfig:
    # Sec. 4.3: 12 RRDB x 32 filters, N_E = 6, motions over 36 px every 3 px (N_M = 12 x 12 = 144),
    # 3 hourglasses of 32 filters. The volume sits at 1/4 of the input on 8 compressed channels:
    # at full resolution D = 864 per frame would need terabytes of activations at 12 MP.
    return ModelConfig(
        name=name,
        task=task,
        features=FeatureConfig(n_rrdb=n_rrdb, filters=32, growth=16),
        volume=VolumeConfig(down=4),
        aggregation=AggregationConfig(filters=hourglass, decoder_filters=32),
        tile=384,  # blind D = 1728: a 384 px tile holds ~0.5 GB of volume
        overlap=64,
    )


def _fast(name: str, task: Task, hourglass: int) -> ModelConfig:
    # Sec. 5.4.3: pixel-unshuffle x2 in, 6 RRDB with depthwise convolutions, half the filters,
    # pixel-shuffle out. To reach ~1 s/MP on 2 CPU cores the features run at 1/4 (unshuffle x2 and
    # one stride-2 entry), the volume at 1/8 with a 5 x 5 motion grid every 8 px (one volume pixel),
    # and the exposure axis is pooled before the hourglasses so blind mode costs what known does.
    return ModelConfig(
        name=name,
        task=task,
        features=FeatureConfig(n_rrdb=6, filters=16, growth=8, depthwise=True, unshuffle=2, stride=2),
        volume=VolumeConfig(down=2, motion_window=40, motion_step=8, pool_exposures=True),
        aggregation=AggregationConfig(filters=hourglass, decoder_filters=16),
        # Measured on 2 Zen 4 cores (bf16): 0.54-0.56 s/MP for 512-1024 px tiles, 1.04 s/MP at 1536
        # (activations leave the caches). Seams: 64 px overlaps leave up to 9 % max deviation with
        # random weights, 128 px about 2 %. 12 MP -> 5 x 4 tiles of ~0.86 MP.
        tile=1024,
        overlap=128,
    )


def emvnet_paper_rgb() -> ModelConfig:
    return _paper("emvnet-paper-rgb", "rgb", n_rrdb=12, hourglass=32)


def emvnet_paper_raw() -> ModelConfig:
    return _paper("emvnet-paper-raw", "raw", n_rrdb=12, hourglass=32)


def emvnet_paper_isp() -> ModelConfig:
    # Sec. 4.4: 16 RRDB, 64-filter hourglasses, 3 output channels through sub-pixel convolutions.
    return _paper("emvnet-paper-isp", "isp", n_rrdb=16, hourglass=64)


def emvnet_fast_rgb() -> ModelConfig:
    return _fast("emvnet-fast-rgb", "rgb", hourglass=16)


def emvnet_fast_raw() -> ModelConfig:
    return _fast("emvnet-fast-raw", "raw", hourglass=16)


def emvnet_fast_isp() -> ModelConfig:
    return _fast("emvnet-fast-isp", "isp", hourglass=32)


VARIANTS: dict[str, Callable[[], ModelConfig]] = {
    "emvnet-paper-rgb": emvnet_paper_rgb,
    "emvnet-paper-raw": emvnet_paper_raw,
    "emvnet-paper-isp": emvnet_paper_isp,
    "emvnet-fast-rgb": emvnet_fast_rgb,
    "emvnet-fast-raw": emvnet_fast_raw,
    "emvnet-fast-isp": emvnet_fast_isp,
}


def variant(name: str) -> ModelConfig:
    """The config of a named variant; KeyError lists the known names."""
    if name not in VARIANTS:
        raise KeyError(f"unknown EMVNet variant {name!r}; known: {', '.join(VARIANTS)}")
    config = VARIANTS[name]()
    assert config.name == name, f"factory for {name} returned {config.name}"
    return config


def with_volume(config: ModelConfig, **changes: Any) -> ModelConfig:
    """A copy with some volume fields changed (ablation switches): typed via dataclasses.replace."""
    return replace(config, volume=replace(config.volume, **changes))


def config_to_dict(config: ModelConfig) -> dict[str, Any]:
    return asdict(config)


def _build(cls: Any, data: dict[str, Any]) -> Any:
    known = {f.name: f for f in fields(cls)}
    unknown = set(data) - set(known)
    if unknown:
        raise ValueError(f"{cls.__name__} has no fields {sorted(unknown)}")
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        default = getattr(cls, key, None)
        sub = _NESTED.get((cls.__name__, key))
        if sub is not None:
            kwargs[key] = _build(sub, value)
        elif isinstance(value, list):
            kwargs[key] = tuple(value)
        elif isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            kwargs[key] = float(value)
        else:
            kwargs[key] = value
    return cls(**kwargs)


_NESTED: dict[tuple[str, str], type] = {
    ("ModelConfig", "features"): FeatureConfig,
    ("ModelConfig", "volume"): VolumeConfig,
    ("ModelConfig", "aggregation"): AggregationConfig,
}


def config_from_dict(data: dict[str, Any]) -> ModelConfig:
    """Inverse of `config_to_dict`; ValueError on unknown or missing fields."""
    try:
        config = _build(ModelConfig, data)
    except TypeError as exc:
        raise ValueError(f"bad EMVNet config: {exc}") from None
    assert isinstance(config, ModelConfig)
    for value in config.volume.exposures:
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"exposure candidates must be positive, got {config.volume.exposures}")
    return config
