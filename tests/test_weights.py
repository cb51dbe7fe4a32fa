"""Checkpoints load through fair-esm's own code; every way it can go wrong says what to do."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from indexer.weights import load_model, write_random_checkpoint
from schemas.errors import UserError


def test_a_random_checkpoint_round_trips_without_a_contact_regression_file(tiny_weights: Path) -> None:
    saved = torch.load(tiny_weights, weights_only=False)["model"]
    assert not list(tiny_weights.parent.glob("*contact-regression*"))
    loaded = load_model(None, tiny_weights, "cpu")
    assert (loaded.name, loaded.num_layers, loaded.embed_dim) == ("esm2_t2_d64_custom", 2, 64)
    state = loaded.model.state_dict()
    for key, value in saved.items():
        assert torch.equal(state[key.removeprefix("encoder.")], value)
    assert len(loaded.weights_sha256) == 64


def test_the_architecture_is_checked_against_the_model_name(tiny_weights: Path) -> None:
    with pytest.raises(UserError, match=r"2 layers and dimension 64.*not esm2_t6_8M_UR50D"):
        load_model("esm2_t6_8M_UR50D", tiny_weights, "cpu")


def test_an_unknown_model_name_lists_the_valid_ones() -> None:
    with pytest.raises(UserError, match="esm2_t33_650M_UR50D"):
        load_model("esm3_large", None, "cpu")


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"\x80\x04K\x01."])
def test_a_file_that_is_not_a_checkpoint_is_named(tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "weights.pt"
    bad.write_bytes(content)
    with pytest.raises(UserError, match=str(bad)):
        load_model(None, bad, "cpu")


def test_no_weights_and_no_network_names_the_weights_option(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    # These machines have no internet; elsewhere, an unreachable host gives the same failure.
    monkeypatch.setattr("indexer.weights.HUB_URL", "http://127.0.0.1:9/{name}.pt")
    with pytest.raises(UserError, match=r"--weights PATH.*esm2_t6_8M_UR50D\.pt"):
        load_model("esm2_t6_8M_UR50D", None, "cpu")


def test_weights_in_the_torch_home_cache_are_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    write_random_checkpoint(tmp_path / "hub" / "checkpoints" / "esm2_t6_8M_UR50D.pt", "8M")
    assert load_model("esm2_t6_8M_UR50D", None, "cpu").embed_dim == 320


def test_cuda_without_a_gpu_is_a_clear_error(tiny_weights: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(UserError, match="no CUDA GPU"):
        load_model(None, tiny_weights, "cuda")
