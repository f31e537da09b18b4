"""A router with the full released architecture and random weights, written in both released formats."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from models.router.network import AudioQualityClassifier, RouterConfig


def build_tiny_router(seed: int = 0) -> AudioQualityClassifier:
    torch.manual_seed(seed)
    model = AudioQualityClassifier(RouterConfig())
    with torch.no_grad():  # non-trivial BatchNorm statistics, so eval mode is really exercised
        for name, buf in model.named_buffers():
            if name.endswith("running_mean"):
                buf.normal_(0, 0.1)
            elif name.endswith("running_var"):
                buf.uniform_(0.5, 1.5)
    return model.eval()


def write_router_checkpoint(path: str | Path, fmt: str = "safetensors", seed: int = 0,
                            metadata_num_layers: int = 4) -> Path:
    """As released: the metadata claims `metadata_num_layers` layers (and a wrong d_model); shapes win."""
    path = Path(path)
    model = build_tiny_router(seed)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    config = {"model": {"n_mels": 80, "d_model": 192, "nhead": 4, "num_layers": metadata_num_layers},
              "training": {"lr": 1e-4}}
    if fmt == "safetensors":
        save_file(state, str(path), metadata={"config": json.dumps(config)})
    elif fmt == "pt":
        torch.save({"model_state_dict": state, "config": config, "epoch": 7, "best_acc": 0.9}, str(path))
    else:
        raise ValueError(f"unknown router checkpoint format {fmt!r}")
    return path
