"""AudioQualityClassifier: the released router architecture, key for key (DESIGN.md §5).

35 tensors, 1,172,229 elements with the released sizes; P(degraded) = softmax(logits)[:, 1].
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class RouterConfig:
    n_mels: int = 80
    conv_channels: int = 128
    d_model: int = 256
    nhead: int = 4
    num_layers: int = 1
    ffn_dim: int = 1024
    classifier_dim: int = 128
    num_classes: int = 2
    max_positions: int = 850  # ≈ 34 s after the two stride-2 convolutions
    dropout: float = 0.1

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor], nhead_hint: int | None = None) -> RouterConfig:
        """Sizes from tensor shapes (the released metadata is wrong about the layer count).

        The head count is not visible in any shape: take the hint (metadata) when it divides d_model,
        else the released value 4.
        """
        d_model = state["frontend.conv.4.weight"].shape[0]
        layers = {int(m.group(1)) for key in state if (m := re.match(r"transformer\.layers\.(\d+)\.", key))}
        nhead = nhead_hint if nhead_hint and d_model % nhead_hint == 0 else 4
        return cls(n_mels=state["frontend.conv.0.weight"].shape[1],
                   conv_channels=state["frontend.conv.0.weight"].shape[0], d_model=d_model, nhead=nhead,
                   num_layers=len(layers), ffn_dim=state["transformer.layers.0.linear1.weight"].shape[0],
                   classifier_dim=state["classifier.0.weight"].shape[0],
                   num_classes=state["classifier.3.weight"].shape[0],
                   max_positions=state["pos_encoder.pe"].shape[1])


class ConvFrontend(nn.Module):
    def __init__(self, config: RouterConfig) -> None:
        super().__init__()
        c, d = config.conv_channels, config.d_model
        self.conv = nn.Sequential(
            nn.Conv1d(config.n_mels, c, 3, stride=2, padding=1), nn.BatchNorm1d(c), nn.GELU(),
            nn.Dropout(config.dropout),
            nn.Conv1d(c, d, 3, stride=2, padding=1), nn.BatchNorm1d(d), nn.GELU(), nn.Dropout(config.dropout),
        )

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # features [B, T, n_mels] -> [B, T/4, d_model]. Positions past each item's length are zeroed
        # between the convolutions, so a padded batch computes exactly what one item alone would.
        x = features.transpose(1, 2)  # [B, n_mels, T]
        x = _zero_beyond(x, lengths)
        x = self.conv[3](self.conv[2](self.conv[1](self.conv[0](x))))
        lengths = conv_length(lengths)
        x = _zero_beyond(x, lengths)
        x = self.conv[7](self.conv[6](self.conv[5](self.conv[4](x))))
        lengths = conv_length(lengths)
        return x.transpose(1, 2), lengths


def conv_length(lengths: torch.Tensor) -> torch.Tensor:
    """Output length of a k=3, s=2, p=1 convolution."""
    return torch.div(lengths - 1, 2, rounding_mode="floor") + 1


def _zero_beyond(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    positions = torch.arange(x.shape[-1], device=x.device)
    return x * (positions[None, :] < lengths[:, None]).unsqueeze(1).to(x.dtype)


class PositionalEncoding(nn.Module):
    def __init__(self, d_model: int, max_positions: int) -> None:
        super().__init__()
        position = torch.arange(max_positions).unsqueeze(1)
        div = torch.exp(torch.arange(0, d_model, 2) * (-math.log(10000.0) / d_model))
        pe = torch.zeros(1, max_positions, d_model)
        pe[0, :, 0::2] = torch.sin(position * div)
        pe[0, :, 1::2] = torch.cos(position * div)
        self.register_buffer("pe", pe, persistent=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] > self.pe.shape[1]:
            raise ValueError(f"{x.shape[1]} positions exceed the router's {self.pe.shape[1]}: score by windows")
        return x + self.pe[:, : x.shape[1]]


class AttentionPooling(nn.Module):
    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.query = nn.Linear(d_model, 1)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        # x [B, T, D], valid [B, T] -> [B, D]: softmax over valid time steps only
        scores = self.query(x).squeeze(-1).masked_fill(~valid, float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        return torch.einsum("bt,btd->bd", weights, x)


class AudioQualityClassifier(nn.Module):
    def __init__(self, config: RouterConfig = RouterConfig()) -> None:
        super().__init__()
        self.config = config
        self.frontend = ConvFrontend(config)
        self.pos_encoder = PositionalEncoding(config.d_model, config.max_positions)
        layer = nn.TransformerEncoderLayer(config.d_model, config.nhead, config.ffn_dim, config.dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, config.num_layers, norm=nn.LayerNorm(config.d_model),
                                                 enable_nested_tensor=False)
        self.pooling = AttentionPooling(config.d_model)
        self.classifier = nn.Sequential(nn.Linear(config.d_model, config.classifier_dim), nn.GELU(),
                                        nn.Dropout(config.dropout),
                                        nn.Linear(config.classifier_dim, config.num_classes))

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # features [B, T, n_mels], mask [B, T] True = valid frame -> logits [B, num_classes]
        x, lengths = self.frontend(features, mask.sum(dim=1))
        valid = torch.arange(x.shape[1], device=x.device)[None, :] < lengths[:, None]  # [B, T/4]
        x = self.transformer(self.pos_encoder(x), src_key_padding_mask=~valid)
        return self.classifier(self.pooling(x, valid))

    def p_degraded(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.forward(features, mask).float(), dim=-1)[:, 1]
