"""`mega-asr-server download`: fetch the production weights from the Hub into a local directory.

The service itself never downloads (its loaders read `MEGA_ASR_MODEL_DIR`). This command fills that
directory once, laid out like the Hub repo `zhifeixie/Mega-ASR` (DESIGN.md section 4):

    Qwen3-ASR-1.7B/          original-layout backbone (config, safetensors shards, tokenizer, processor)
    mega-asr-merged/         adapter_config.json, adapter_model.safetensors, mega_lora_blocks.json
    audio_quality_router/    best_acc_model.safetensors (older releases: best_acc_model.pt)

Downloads resume: `snapshot_download(local_dir=...)` keeps partial files under `<dest>/.cache/huggingface`
and continues them on the next run. After a verified download a marker file records what was fetched, so a
later run (a Kubernetes initContainer on every pod start) returns at once without touching the network.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import snapshot_download

BACKBONE_SUBDIR = "Qwen3-ASR-1.7B"
ADAPTER_SUBDIR = "mega-asr-merged"
ROUTER_SUBDIR = "audio_quality_router"
MEGA_ASR_SUBDIRS = (BACKBONE_SUBDIR, ADAPTER_SUBDIR, ROUTER_SUBDIR)
# A separate backbone repo (e.g. Qwen/Qwen3-ASR-1.7B) is a flat directory: take configs, weights, tokenizer
# files and templates; never code (the service does not run remote code).
BACKBONE_REPO_PATTERNS = ("*.json", "*.safetensors", "*.txt", "*.jinja")
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "mega_lora_blocks.json")
ROUTER_FILES = ("best_acc_model.safetensors", "best_acc_model.pt")  # either one
MARKER_NAME = ".mega-asr-download.json"


class DownloadError(RuntimeError):
    """The download finished but the directory is not a complete Mega-ASR checkpoint."""


@dataclass(frozen=True)
class DownloadPlan:
    """One `snapshot_download` call: which repo, into which directory, which files."""

    repo_id: str
    local_dir: Path
    allow_patterns: tuple[str, ...]
    revision: str | None


def download_plans(dest: Path, mega_asr_id: str, backbone_id: str | None,
                   revision: str | None) -> list[DownloadPlan]:
    """The Mega-ASR repo gives the adapter and router, and the backbone too unless `backbone_id` names
    another repo (which then lands in `<dest>/Qwen3-ASR-1.7B`). `revision` pins the Mega-ASR repo only."""
    subdirs = MEGA_ASR_SUBDIRS if backbone_id is None else (ADAPTER_SUBDIR, ROUTER_SUBDIR)
    plans = [DownloadPlan(mega_asr_id, dest, tuple(f"{name}/*" for name in subdirs), revision)]
    if backbone_id is not None:
        plans.append(DownloadPlan(backbone_id, dest / BACKBONE_SUBDIR, BACKBONE_REPO_PATTERNS, None))
    return plans


def download_weights(dest: Path, mega_asr_id: str, backbone_id: str | None = None,
                     revision: str | None = None, *, force: bool = False) -> Path:
    """Fill `dest` with a complete checkpoint and return it. Skips the network when a previous run with the
    same ids and revision completed and the files are still there (unless `force`)."""
    dest = Path(dest)
    request = {"mega_asr_id": mega_asr_id, "backbone_id": backbone_id, "revision": revision}
    if not force and _previous_download_matches(dest, request):
        print(f"{dest}: complete checkpoint already present ({MARKER_NAME}); nothing to download")
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    for plan in download_plans(dest, mega_asr_id, backbone_id, revision):
        print(f"downloading {plan.repo_id}@{plan.revision or 'main'} {list(plan.allow_patterns)} "
              f"-> {plan.local_dir}", flush=True)
        # snapshot_download shows tqdm progress bars and resumes partial files kept in local_dir/.cache.
        snapshot_download(plan.repo_id, revision=plan.revision, local_dir=plan.local_dir,
                          allow_patterns=list(plan.allow_patterns), force_download=force)
    files = verify_checkpoint(dest)
    sizes = {str(path.relative_to(dest)): path.stat().st_size for path in files}
    (dest / MARKER_NAME).write_text(json.dumps({**request, "files": sizes}, indent=2) + "\n")
    _print_summary(dest, sizes)
    return dest


ALIGNER_SUBDIR = "Qwen3-ForcedAligner-0.6B"  # MEGA_ASR_ALIGNER_DIR=<dest>/Qwen3-ForcedAligner-0.6B


def download_aligner(dest: Path, aligner_id: str, *, force: bool = False) -> Path:
    """Fetch the forced aligner (word times) into `<dest>/Qwen3-ForcedAligner-0.6B` and check its files
    (config, weights whole); returns the directory. Resumes like download_weights."""
    target = Path(dest) / ALIGNER_SUBDIR
    print(f"downloading {aligner_id} {list(BACKBONE_REPO_PATTERNS)} -> {target}", flush=True)
    snapshot_download(aligner_id, local_dir=target, allow_patterns=list(BACKBONE_REPO_PATTERNS),
                      force_download=force)
    problems: list[str] = []
    files = _required_files(target, ("config.json",), problems)
    weights = sorted(target.glob("*.safetensors"))
    if not weights:
        problems.append(f"{ALIGNER_SUBDIR}/: no safetensors weights")
    problems += [f"{path.name}: {damage}" for path in weights if (damage := safetensors_problem(path))]
    if problems:
        raise DownloadError(f"{target} is not a complete forced aligner:\n  " + "\n  ".join(problems))
    _print_summary(target, {str(path.relative_to(target)): path.stat().st_size for path in files + weights})
    return target


def verify_checkpoint(dest: Path) -> list[Path]:
    """Return the checkpoint's essential files, or raise DownloadError naming every missing or damaged one."""
    problems: list[str] = []
    files = _backbone_files(dest / BACKBONE_SUBDIR, problems)
    files += _required_files(dest / ADAPTER_SUBDIR, ADAPTER_FILES, problems)
    routers = [dest / ROUTER_SUBDIR / name for name in ROUTER_FILES if (dest / ROUTER_SUBDIR / name).is_file()]
    if not routers:
        problems.append(f"{ROUTER_SUBDIR}/: none of {', '.join(ROUTER_FILES)}")
    files += routers[:1]
    for path in files:
        if path.suffix == ".safetensors" and path.is_file():
            damage = safetensors_problem(path)
            if damage:
                problems.append(f"{path.relative_to(dest)}: {damage}")
    if problems:
        raise DownloadError(f"{dest} is not a complete Mega-ASR checkpoint:\n  " + "\n  ".join(problems))
    return files


def _backbone_files(backbone: Path, problems: list[str]) -> list[Path]:
    files = _required_files(backbone, ("config.json", "tokenizer_config.json"), problems)
    index = backbone / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        files.append(index)
        files += _required_files(backbone, tuple(shards), problems)
    elif (backbone / "model.safetensors").is_file():
        files.append(backbone / "model.safetensors")
    else:
        problems.append(f"{BACKBONE_SUBDIR}/: no model.safetensors nor model.safetensors.index.json")
    return files


def _required_files(folder: Path, names: tuple[str, ...], problems: list[str]) -> list[Path]:
    missing = [name for name in names if not (folder / name).is_file()]
    problems.extend(f"{folder.name}/{name}: missing" for name in missing)
    return [folder / name for name in names if name not in missing]


def safetensors_problem(path: Path) -> str | None:
    """A safetensors file is 8 bytes of header length, a JSON header, then the tensor bytes; a truncated
    download is shorter than the header says. Returns what is wrong, or None."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            return f"truncated ({size} bytes)"
        (header_len,) = struct.unpack("<Q", prefix)
        if header_len > size - 8:
            return f"truncated (header of {header_len} bytes, file of {size})"
        try:
            header = json.loads(handle.read(header_len))
        except ValueError:
            return "unreadable header"
    ends = [entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"]
    expected = 8 + header_len + max(ends, default=0)
    if size != expected:
        return f"size {size} bytes, header says {expected}"
    return None


def _previous_download_matches(dest: Path, request: dict[str, str | None]) -> bool:
    marker = dest / MARKER_NAME
    if not marker.is_file():
        return False
    recorded = json.loads(marker.read_text())
    if any(recorded.get(key) != value for key, value in request.items()):
        return False
    sizes: dict[str, int] = recorded.get("files", {})
    return bool(sizes) and all((dest / name).is_file() and (dest / name).stat().st_size == size
                               for name, size in sizes.items())


def _print_summary(dest: Path, sizes: dict[str, int]) -> None:
    print(f"{dest}: complete checkpoint, {len(sizes)} essential files, "
          f"{sum(sizes.values()) / 2**30:.2f} GiB")
    for name, size in sorted(sizes.items()):
        print(f"  {size / 2**20:10.1f} MiB  {name}")
