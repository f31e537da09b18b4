"""Reader for the CTranslate2 `model.bin` format (binary versions 4-6), streamed from one or more files.

Layout (little endian), as written by ctranslate2's `ModelSpec.save`:
    u32 version; str spec_name; u32 revision; u32 n_vars;
    n_vars x {str name; u8 rank; rank x u32 dims; u8 dtype_id; u32 nbytes; nbytes raw}
    u32 n_aliases; n_aliases x {str alias; str target}
where `str` = u16 length (counting a trailing NUL) + UTF-8 bytes. Versions 1-3 stored an item size instead of
a dtype id, so only 4..6 are accepted. A model split into parts (`model.bin.part1`, `model.bin.part2`) is read
as the concatenation of the parts in order, without joining them on disk.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

MIN_BINARY_VERSION = 4  # first version with dtype ids
MAX_BINARY_VERSION = 6  # newest layout this reader knows

# CT2 dtype id -> torch dtype; bfloat16 has no numpy dtype, so every id is decoded through torch.
DTYPES: dict[int, torch.dtype] = {
    0: torch.float32,
    1: torch.int8,
    2: torch.int16,
    3: torch.int32,
    4: torch.float16,
    5: torch.bfloat16,
}


class Ct2FormatError(ValueError):
    """The file is not a CTranslate2 model this reader supports, or it is truncated/corrupt."""


@dataclass
class Ct2Model:
    """Every variable of a CT2 model as a CPU tensor, plus the alias table (alias name -> target name)."""

    version: int
    spec_name: str
    revision: int
    variables: dict[str, torch.Tensor]
    aliases: dict[str, str] = field(default_factory=dict)

    def get(self, name: str) -> torch.Tensor:
        """A variable by name, following aliases (e.g. decoder/projection/weight -> decoder/embeddings/weight)."""
        target = self.aliases.get(name, name)
        if target not in self.variables:
            raise KeyError(f"CT2 model has no variable {name!r}" + (f" (alias of {target!r})" if target != name else ""))
        return self.variables[target]


class ConcatenatedReader:
    """A read-only stream over several files in order, as if they were one (for split model files)."""

    def __init__(self, paths: Sequence[Path]) -> None:
        if not paths:
            raise ValueError("ConcatenatedReader needs at least one file")
        self._paths = [Path(p) for p in paths]
        self._index = 0
        self._handle: BinaryIO | None = None
        self.position = 0  # bytes consumed so far, for error messages and progress

    def __enter__(self) -> ConcatenatedReader:  # noqa: PYI034 (typing.Self needs Python 3.11)
        self._handle = self._paths[0].open("rb")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    @property
    def total_size(self) -> int:
        return sum(p.stat().st_size for p in self._paths)

    def read(self, size: int) -> bytes:
        """Up to `size` bytes, crossing file boundaries; fewer only at the end of the last file."""
        if self._handle is None:
            raise RuntimeError("ConcatenatedReader used outside a `with` block")
        chunks: list[bytes] = []
        remaining = size
        while remaining > 0:
            chunk = self._handle.read(remaining)
            if chunk:
                chunks.append(chunk)
                remaining -= len(chunk)
                continue
            if self._index + 1 >= len(self._paths):
                break
            self._handle.close()
            self._index += 1
            self._handle = self._paths[self._index].open("rb")
        data = b"".join(chunks)
        self.position += len(data)
        return data

    def read_exact(self, size: int, what: str) -> bytes:
        data = self.read(size)
        if len(data) != size:
            raise Ct2FormatError(f"truncated CT2 model: wanted {size} bytes for {what} at offset "
                                 f"{self.position - len(data)}, got {len(data)}")
        return data


def _read_u8(stream: ConcatenatedReader, what: str) -> int:
    return stream.read_exact(1, what)[0]


def _read_u16(stream: ConcatenatedReader, what: str) -> int:
    return struct.unpack("<H", stream.read_exact(2, what))[0]


def _read_u32(stream: ConcatenatedReader, what: str) -> int:
    return struct.unpack("<I", stream.read_exact(4, what))[0]


def _read_str(stream: ConcatenatedReader, what: str) -> str:
    length = _read_u16(stream, f"{what} length")
    raw = stream.read_exact(length, what)
    if not raw.endswith(b"\0"):
        raise Ct2FormatError(f"CT2 string for {what} at offset {stream.position - length} lacks its trailing NUL")
    return raw[:-1].decode("utf-8")


def _read_variable(stream: ConcatenatedReader) -> tuple[str, torch.Tensor]:
    name = _read_str(stream, "variable name")
    rank = _read_u8(stream, f"{name} rank")
    dims = struct.unpack(f"<{rank}I", stream.read_exact(4 * rank, f"{name} dims")) if rank else ()
    dtype_id = _read_u8(stream, f"{name} dtype")
    if dtype_id not in DTYPES:
        raise Ct2FormatError(f"variable {name!r} has unknown CT2 dtype id {dtype_id}")
    dtype = DTYPES[dtype_id]
    nbytes = _read_u32(stream, f"{name} size")
    expected = int(np.prod(dims, dtype=np.int64)) * torch.empty((), dtype=dtype).element_size()
    if nbytes != expected:
        raise Ct2FormatError(f"variable {name!r}: {nbytes} bytes for shape {tuple(dims)} {dtype} (want {expected})")
    raw = bytearray(stream.read_exact(nbytes, f"{name} data"))
    tensor = torch.frombuffer(raw, dtype=dtype) if nbytes else torch.empty(0, dtype=dtype)
    return name, tensor.reshape(dims)


def _read_header(stream: ConcatenatedReader, expected_spec: str | None) -> tuple[int, str, int, int]:
    """(version, spec_name, revision, variable count), validated."""
    version = _read_u32(stream, "binary version")
    if not MIN_BINARY_VERSION <= version <= MAX_BINARY_VERSION:
        raise Ct2FormatError(f"unsupported CT2 binary version {version} "
                             f"(this reader handles {MIN_BINARY_VERSION}..{MAX_BINARY_VERSION})")
    spec_name = _read_str(stream, "spec name")
    if expected_spec is not None and spec_name != expected_spec:
        raise Ct2FormatError(f"CT2 model is a {spec_name!r}, expected {expected_spec!r}")
    revision = _read_u32(stream, "spec revision")
    return version, spec_name, revision, _read_u32(stream, "variable count")


def _read_aliases(stream: ConcatenatedReader) -> dict[str, str]:
    count = _read_u32(stream, "alias count")
    aliases = {}
    for _ in range(count):
        alias = _read_str(stream, "alias name")
        aliases[alias] = _read_str(stream, f"target of alias {alias!r}")
    if stream.read(1):
        raise Ct2FormatError(f"unexpected data after the alias table at offset {stream.position - 1}")
    return aliases


def read_ct2_model(paths: Path | Sequence[Path], expected_spec: str | None = "WhisperSpec",
                   progress: bool = False) -> Ct2Model:
    """Read a whole CT2 model.bin (or its parts, in order) into CPU tensors; raise Ct2FormatError if invalid."""
    parts = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]
    with ConcatenatedReader(parts) as stream:
        bar = _progress_bar(stream.total_size, parts[0].name, progress)
        version, spec_name, revision, count = _read_header(stream, expected_spec)
        variables: dict[str, torch.Tensor] = {}
        for _ in range(count):
            name, tensor = _read_variable(stream)
            if name in variables:
                raise Ct2FormatError(f"variable {name!r} appears twice")
            variables[name] = tensor
            bar.update(stream.position - bar.n)
        aliases = _read_aliases(stream)
        bar.update(stream.position - bar.n)
        bar.close()
    dangling = {alias: target for alias, target in aliases.items() if target not in variables}
    if dangling:
        raise Ct2FormatError(f"aliases point at missing variables: {dangling}")
    return Ct2Model(version, spec_name, revision, variables, aliases)


def _progress_bar(total: int, label: str, enabled: bool):  # -> tqdm
    from tqdm.auto import tqdm  # imported lazily: nothing heavy at import time

    return tqdm(total=total, unit="B", unit_scale=True, desc=f"read {label}", disable=not enabled)
