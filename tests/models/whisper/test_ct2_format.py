"""The CT2 model.bin reader on small synthetic files: every dtype, aliases, split files, corrupt input."""

from __future__ import annotations

import itertools
import struct

import numpy as np
import pytest
import torch

from models.whisper.ct2_format import Ct2FormatError, read_ct2_model
from tests.models.whisper import ct2_str, ct2_variable, write_ct2_model

RNG = np.random.default_rng(0)
VARIABLES = {
    "encoder/w32": RNG.normal(size=(3, 4)).astype(np.float32),
    "encoder/w16": RNG.normal(size=(2, 5)).astype(np.float16),
    "decoder/i8": np.array([-128, 0, 127], dtype=np.int8),
    "decoder/i16": np.array(7, dtype=np.int16),  # rank-0 spec attribute
    "decoder/i32": np.arange(6, dtype=np.int32).reshape(1, 2, 3),
    "decoder/empty": np.zeros((0, 4), dtype=np.float32),
}


def test_reads_every_dtype_shape_and_alias(tmp_path):
    path = write_ct2_model(tmp_path / "model.bin", VARIABLES, aliases={"decoder/proj": "encoder/w32"})
    model = read_ct2_model(path)
    assert (model.version, model.spec_name, model.revision) == (6, "WhisperSpec", 3)
    assert list(model.variables) == list(VARIABLES)
    for name, array in VARIABLES.items():
        tensor = model.variables[name]
        assert tensor.shape == array.shape and tensor.numpy().dtype == array.dtype, name
        np.testing.assert_array_equal(tensor.numpy(), array)
    assert model.aliases == {"decoder/proj": "encoder/w32"}
    assert model.get("decoder/proj") is model.variables["encoder/w32"]


def test_reads_bfloat16(tmp_path):
    values = torch.tensor([1.5, -2.0, 3.25], dtype=torch.bfloat16)
    bits = values.view(torch.int16).numpy()
    path = tmp_path / "model.bin"
    path.write_bytes(struct.pack("<I", 6) + ct2_str("WhisperSpec") + struct.pack("<II", 1, 1)
                     + ct2_variable("x", bits, dtype_id=5) + struct.pack("<I", 0))
    tensor = read_ct2_model(path).variables["x"]
    assert tensor.dtype == torch.bfloat16 and tensor.tolist() == [1.5, -2.0, 3.25]


@pytest.mark.parametrize("cuts", [(1,), (5, 77), (100, 101, 102)])
def test_split_files_read_as_their_concatenation(tmp_path, cuts):
    whole = write_ct2_model(tmp_path / "model.bin", VARIABLES, aliases={"a": "decoder/i8"}).read_bytes()
    bounds = (0, *cuts, len(whole))
    parts = []
    for index, (start, stop) in enumerate(itertools.pairwise(bounds)):
        parts.append(tmp_path / f"model.bin.part{index + 1}")
        parts[-1].write_bytes(whole[start:stop])
    split, single = read_ct2_model(parts), read_ct2_model(tmp_path / "model.bin")
    assert split.aliases == single.aliases
    for name in VARIABLES:
        assert torch.equal(split.variables[name], single.variables[name])


@pytest.mark.parametrize("version", [3, 7])
def test_rejects_unknown_versions(tmp_path, version):
    path = write_ct2_model(tmp_path / "model.bin", VARIABLES, version=version)
    with pytest.raises(Ct2FormatError, match=f"version {version}"):
        read_ct2_model(path)


def test_rejects_other_specs(tmp_path):
    path = write_ct2_model(tmp_path / "model.bin", VARIABLES, spec="TransformerSpec")
    with pytest.raises(Ct2FormatError, match="TransformerSpec"):
        read_ct2_model(path)
    assert read_ct2_model(path, expected_spec=None).spec_name == "TransformerSpec"


def test_rejects_truncated_and_trailing_data(tmp_path):
    whole = write_ct2_model(tmp_path / "model.bin", VARIABLES).read_bytes()
    (tmp_path / "short.bin").write_bytes(whole[:-10])
    with pytest.raises(Ct2FormatError, match="truncated"):
        read_ct2_model(tmp_path / "short.bin")
    (tmp_path / "long.bin").write_bytes(whole + b"\0")
    with pytest.raises(Ct2FormatError, match="after the alias table"):
        read_ct2_model(tmp_path / "long.bin")


def test_rejects_inconsistent_sizes_dtypes_and_aliases(tmp_path):
    header = struct.pack("<I", 6) + ct2_str("WhisperSpec") + struct.pack("<II", 3, 1)
    bad_size = ct2_str("x") + struct.pack("<B2IBI", 2, 2, 2, 0, 12) + bytes(12)  # 2x2 float32 needs 16 bytes
    (tmp_path / "size.bin").write_bytes(header + bad_size + struct.pack("<I", 0))
    with pytest.raises(Ct2FormatError, match="'x': 12 bytes"):
        read_ct2_model(tmp_path / "size.bin")
    bad_dtype = ct2_str("y") + struct.pack("<B1IBI", 1, 1, 9, 4) + bytes(4)
    (tmp_path / "dtype.bin").write_bytes(header + bad_dtype + struct.pack("<I", 0))
    with pytest.raises(Ct2FormatError, match="dtype id 9"):
        read_ct2_model(tmp_path / "dtype.bin")
    path = write_ct2_model(tmp_path / "alias.bin", VARIABLES, aliases={"p": "missing"})
    with pytest.raises(Ct2FormatError, match="missing"):
        read_ct2_model(path)
