"""Router checkpoints: `best_acc_model.safetensors` (config JSON in metadata key "config") and the legacy
`best_acc_model.pt` wrapper dict, loaded without running pickled code. Loading is strict."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from models.router.network import AudioQualityClassifier, RouterConfig


class RouterCheckpointError(ValueError):
    """The file is not a router checkpoint we can load, and says why."""


def load_router(path: str | Path) -> tuple[AudioQualityClassifier, dict]:
    """Load a router in eval mode; returns (model, the metadata config it carried)."""
    path = Path(path)
    if not path.is_file():
        raise RouterCheckpointError(f"{path}: no such router checkpoint file")
    if path.suffix == ".safetensors":
        state, meta = _read_safetensors(path)
    elif path.suffix in (".pt", ".pth", ".bin"):
        state, meta = _read_legacy(path)
    else:
        raise RouterCheckpointError(f"{path}: expected best_acc_model.safetensors or a legacy best_acc_model.pt")
    try:
        config = RouterConfig.from_state_dict(state, nhead_hint=meta.get("nhead") or meta.get("num_heads"))
    except KeyError as exc:
        raise RouterCheckpointError(f"{path}: not a router state dict (missing {exc.args[0]})") from None
    model = AudioQualityClassifier(config)
    _load_strict(model, state, path)
    return model.eval(), meta


def save_router(model: AudioQualityClassifier, path: str | Path, config_extra: dict | None = None) -> None:
    """Write the released safetensors format; the metadata "config" describes the real shapes."""
    c = model.config
    described = {"model": {"n_mels": c.n_mels, "d_model": c.d_model, "nhead": c.nhead,
                           "num_layers": c.num_layers, "dim_feedforward": c.ffn_dim, "dropout": c.dropout}}
    described.update(config_extra or {})
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata={"config": json.dumps(described)})


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    try:
        with safe_open(str(path), framework="pt") as f:
            state = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 (safe_open is not iterable)
            raw = (f.metadata() or {}).get("config")
    except (SafetensorError, OSError, ValueError) as exc:
        raise RouterCheckpointError(f"{path}: unreadable safetensors file ({exc})") from None
    meta: dict = {}
    if raw:
        try:
            meta = json.loads(raw).get("model", {}) or {}
        except (json.JSONDecodeError, AttributeError):
            raise RouterCheckpointError(f"{path}: metadata 'config' is not the expected JSON") from None
    return state, meta


def _read_legacy(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    try:
        blob = torch.load(str(path), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, AttributeError) as exc:
        raise RouterCheckpointError(
            f"{path}: refused: a legacy .pt router must be a plain dict of tensors loadable with "
            f"weights_only=True; this one needs arbitrary pickled code ({type(exc).__name__})") from None
    if not isinstance(blob, dict) or not isinstance(blob.get("model_state_dict"), dict):
        raise RouterCheckpointError(f"{path}: expected a dict with 'model_state_dict' (and 'config')")
    config = blob.get("config") if isinstance(blob.get("config"), dict) else {}
    return blob["model_state_dict"], config.get("model", {}) or {}


def _load_strict(model: AudioQualityClassifier, state: dict[str, torch.Tensor], path: Path) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    if missing or unexpected or shapes:
        raise RouterCheckpointError(f"{path}: router weights do not match the architecture: "
                                    f"missing {missing}, unexpected {unexpected}, wrong shape {shapes}")
    model.load_state_dict(state, strict=True)
