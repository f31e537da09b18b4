"""The download command, offline: snapshot_download is replaced by a fake Hub that serves a small repo."""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from app import download
from app.download import DownloadError, download_plans, download_weights, verify_checkpoint


def safetensors_bytes(tmp_path: Path, name: str, numel: int) -> bytes:
    path = tmp_path / f"src-{name.replace('/', '_')}"
    save_file({"weight": torch.arange(numel, dtype=torch.float32)}, str(path))
    return path.read_bytes()


def mega_asr_repo(tmp_path: Path) -> dict[str, bytes]:
    """The files of a (tiny) zhifeixie/Mega-ASR: sharded backbone, adapter, router, plus files to skip."""
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    return {
        "README.md": b"card",
        "assets/figure.png": b"png",
        "Qwen3-ASR-1.7B/config.json": b"{}",
        "Qwen3-ASR-1.7B/tokenizer_config.json": b"{}",
        "Qwen3-ASR-1.7B/model.safetensors.index.json": json.dumps(index).encode(),
        "Qwen3-ASR-1.7B/model-00001-of-00002.safetensors": safetensors_bytes(tmp_path, "s1", 6),
        "Qwen3-ASR-1.7B/model-00002-of-00002.safetensors": safetensors_bytes(tmp_path, "s2", 4),
        "mega-asr-merged/adapter_config.json": b"{}",
        "mega-asr-merged/adapter_model.safetensors": safetensors_bytes(tmp_path, "lora", 8),
        "mega-asr-merged/mega_lora_blocks.json": b"{}",
        "audio_quality_router/best_acc_model.safetensors": safetensors_bytes(tmp_path, "router", 3),
    }


class FakeHub:
    """Serves `repos` like snapshot_download: only files matching allow_patterns, written under local_dir."""

    def __init__(self, repos: dict[str, dict[str, bytes]]) -> None:
        self.repos = repos
        self.calls: list[dict] = []

    def __call__(self, repo_id: str, *, revision=None, local_dir=None, allow_patterns=None, **kwargs) -> str:
        self.calls.append({"repo_id": repo_id, "revision": revision, "local_dir": Path(local_dir),
                           "allow_patterns": list(allow_patterns)})
        for name, data in self.repos[repo_id].items():
            if any(fnmatch.fnmatch(name, pattern) for pattern in allow_patterns):
                target = Path(local_dir) / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
        return str(local_dir)


@pytest.fixture
def hub(tmp_path, monkeypatch) -> FakeHub:
    fake = FakeHub({"zhifeixie/Mega-ASR": mega_asr_repo(tmp_path)})
    monkeypatch.setattr(download, "snapshot_download", fake)
    return fake


def test_plans_take_only_the_three_checkpoint_folders(tmp_path):
    (plan,) = download_plans(tmp_path, "zhifeixie/Mega-ASR", None, "abc123")
    assert plan.allow_patterns == ("Qwen3-ASR-1.7B/*", "mega-asr-merged/*", "audio_quality_router/*")
    assert (plan.repo_id, plan.local_dir, plan.revision) == ("zhifeixie/Mega-ASR", tmp_path, "abc123")


def test_separate_backbone_repo_lands_in_the_backbone_folder(tmp_path):
    mega, backbone = download_plans(tmp_path, "zhifeixie/Mega-ASR", "Qwen/Qwen3-ASR-1.7B", None)
    assert mega.allow_patterns == ("mega-asr-merged/*", "audio_quality_router/*")
    assert backbone.repo_id == "Qwen/Qwen3-ASR-1.7B"
    assert backbone.local_dir == tmp_path / "Qwen3-ASR-1.7B"
    assert "*.py" not in backbone.allow_patterns and "*.safetensors" in backbone.allow_patterns


def test_download_fetches_verifies_and_reports(tmp_path, hub, capsys):
    dest = tmp_path / "Mega-ASR"
    assert download_weights(dest, "zhifeixie/Mega-ASR", None, "rev1") == dest
    assert [call["revision"] for call in hub.calls] == ["rev1"]
    assert not (dest / "README.md").exists() and not (dest / "assets").exists()
    marker = json.loads((dest / download.MARKER_NAME).read_text())
    assert marker["revision"] == "rev1"
    assert "mega-asr-merged/adapter_model.safetensors" in marker["files"]
    assert "Qwen3-ASR-1.7B/model-00002-of-00002.safetensors" in marker["files"]
    out = capsys.readouterr().out
    assert "complete checkpoint, 9 essential files" in out
    assert "audio_quality_router/best_acc_model.safetensors" in out


def test_second_run_skips_the_network_until_the_revision_changes(tmp_path, hub, capsys):
    dest = tmp_path / "Mega-ASR"
    download_weights(dest, "zhifeixie/Mega-ASR", None, "rev1")
    download_weights(dest, "zhifeixie/Mega-ASR", None, "rev1")
    assert len(hub.calls) == 1
    assert "nothing to download" in capsys.readouterr().out
    download_weights(dest, "zhifeixie/Mega-ASR", None, "rev2")
    assert len(hub.calls) == 2


def test_a_file_changed_after_download_triggers_a_new_download(tmp_path, hub):
    dest = tmp_path / "Mega-ASR"
    download_weights(dest, "zhifeixie/Mega-ASR", None, None)
    (dest / "mega-asr-merged/adapter_model.safetensors").write_bytes(b"short")
    download_weights(dest, "zhifeixie/Mega-ASR", None, None)
    assert len(hub.calls) == 2
    assert verify_checkpoint(dest)  # the fake hub restored the file


def test_missing_files_are_all_named(tmp_path, hub):
    repo = hub.repos["zhifeixie/Mega-ASR"]
    del repo["mega-asr-merged/mega_lora_blocks.json"]
    del repo["audio_quality_router/best_acc_model.safetensors"]
    del repo["Qwen3-ASR-1.7B/model-00002-of-00002.safetensors"]
    with pytest.raises(DownloadError) as failure:
        download_weights(tmp_path / "Mega-ASR", "zhifeixie/Mega-ASR", None, None)
    message = str(failure.value)
    assert "mega-asr-merged/mega_lora_blocks.json: missing" in message
    assert "audio_quality_router/: none of best_acc_model.safetensors, best_acc_model.pt" in message
    assert "Qwen3-ASR-1.7B/model-00002-of-00002.safetensors: missing" in message
    assert not (tmp_path / "Mega-ASR" / download.MARKER_NAME).exists()


def test_truncated_safetensors_is_refused(tmp_path, hub):
    repo = hub.repos["zhifeixie/Mega-ASR"]
    repo["mega-asr-merged/adapter_model.safetensors"] = repo["mega-asr-merged/adapter_model.safetensors"][:-4]
    with pytest.raises(DownloadError, match=r"adapter_model.safetensors: size \d+ bytes, header says \d+"):
        download_weights(tmp_path / "Mega-ASR", "zhifeixie/Mega-ASR", None, None)


def test_unsharded_backbone_and_legacy_router_are_accepted(tmp_path, hub):
    repo = hub.repos["zhifeixie/Mega-ASR"]
    for name in [n for n in repo if n.startswith("Qwen3-ASR-1.7B/model")]:
        del repo[name]
    repo["Qwen3-ASR-1.7B/model.safetensors"] = safetensors_bytes(tmp_path, "single", 5)
    repo["audio_quality_router/best_acc_model.pt"] = repo.pop("audio_quality_router/best_acc_model.safetensors")
    files = verify_checkpoint(download_weights(tmp_path / "M", "zhifeixie/Mega-ASR", None, None))
    names = {str(path.relative_to(tmp_path / "M")) for path in files}
    assert {"Qwen3-ASR-1.7B/model.safetensors", "audio_quality_router/best_acc_model.pt"} <= names


def test_backbone_from_its_own_repo(tmp_path, hub):
    mega = hub.repos["zhifeixie/Mega-ASR"]
    hub.repos["Qwen/Qwen3-ASR-1.7B"] = {
        name.removeprefix("Qwen3-ASR-1.7B/"): data for name, data in mega.items()
        if name.startswith("Qwen3-ASR-1.7B/")} | {"modeling_custom.py": b"code"}
    for name in [n for n in mega if n.startswith("Qwen3-ASR-1.7B/")]:
        del mega[name]
    dest = download_weights(tmp_path / "M", "zhifeixie/Mega-ASR", "Qwen/Qwen3-ASR-1.7B", None)
    assert [call["repo_id"] for call in hub.calls] == ["zhifeixie/Mega-ASR", "Qwen/Qwen3-ASR-1.7B"]
    assert (dest / "Qwen3-ASR-1.7B/model-00001-of-00002.safetensors").is_file()
    assert not (dest / "Qwen3-ASR-1.7B/modeling_custom.py").exists()
