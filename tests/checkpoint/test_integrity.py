"""Checkpoint integrity: the content hash written with every checkpoint and checked on load, and the
refusal of non-finite weights."""

import zipfile

import pytest
import torch

from image2point.checkpoint import load_checkpoint, save_checkpoint
from image2point.checkpoint.integrity import CONTENT_HASH_KEY, content_digest, require_finite_weights
from image2point.errors import CheckpointError


def _state() -> dict:
    return {"model": {"w": torch.arange(12, dtype=torch.float32).reshape(3, 4), "n": torch.tensor(7)},
            "epoch": 3, "history": [{"loss": 0.5}], "best_score": float("-inf"), "note": None}


def _flip_one_byte_of(path, member_suffix: str) -> None:
    """Rewrite the zip with one byte of a tensor's data flipped (torch reads such a file without complaint)."""
    with zipfile.ZipFile(path) as source:
        records = [(info, bytearray(source.read(info))) for info in source.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as target:
        for info, data in records:
            if info.filename.endswith(member_suffix):
                data[1] ^= 0x01
            target.writestr(info, bytes(data))


def test_a_saved_checkpoint_carries_its_hash_and_loads_without_it(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, _state())
    raw = torch.load(path, weights_only=True)
    assert raw[CONTENT_HASH_KEY] == content_digest(_state())
    loaded = load_checkpoint(path)
    assert CONTENT_HASH_KEY not in loaded and loaded["epoch"] == 3
    assert torch.equal(loaded["model"]["w"], _state()["model"]["w"])


def test_a_flipped_byte_in_a_tensor_is_refused(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, _state())
    _flip_one_byte_of(path, "data/0")
    torch.load(path, weights_only=True)  # still readable: only the hash can tell
    with pytest.raises(CheckpointError, match=r"c\.pt: content hash does not match .*damaged or changed"):
        load_checkpoint(path)


def test_the_digest_sees_values_dtypes_shapes_and_structure():
    base = content_digest(_state())
    changes = [lambda s: s["model"].__setitem__("w", s["model"]["w"].double()),
               lambda s: s["model"].__setitem__("w", s["model"]["w"].reshape(4, 3)),
               lambda s: s.__setitem__("epoch", 4),
               lambda s: s["history"].append({}),
               lambda s: s.__setitem__("note", "")]
    for change in changes:
        state = _state()
        change(state)
        assert content_digest(state) != base
    reordered = dict(reversed(list(_state().items())))
    assert content_digest(reordered) == base


def test_a_checkpoint_without_a_hash_loads_as_before(tmp_path):
    path = tmp_path / "old.pt"
    torch.save(_state(), path)
    assert load_checkpoint(path)["epoch"] == 3


def test_non_finite_weights_are_refused_naming_the_tensor():
    weights = {"a": torch.zeros(3), "b": torch.tensor([1.0, float("nan"), float("inf")]), "i": torch.arange(3)}
    with pytest.raises(CheckpointError, match=r"w.pt: non-finite weights: 2 NaN or Inf values in 'b'"):
        require_finite_weights(weights, "w.pt")
    require_finite_weights({"a": torch.zeros(3), "i": torch.arange(3)}, "w.pt")
