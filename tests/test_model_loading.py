"""Loading fair-esm checkpoints: what users point at loads, and every mistake says what to do."""

from __future__ import annotations

import json
import urllib.error
from pathlib import Path

import pytest
import torch

from orthovec.embedding import model as model_module
from orthovec.embedding.model import ESM2_ARCHITECTURES, load_model
from orthovec.embedding.random_weights import write_random_checkpoint
from orthovec.indexer.cli import random_weights_command
from orthovec.schemas.errors import Invalid, NotFound, Unavailable


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_random_checkpoint(tmp_path_factory.mktemp("weights"), "tiny", seed=3)


@pytest.fixture()
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty torch hub cache and a network that refuses at once; returns the hub checkpoint dir."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(model_module.urllib.request, "urlopen", refuse)
    return tmp_path / "torch" / "hub" / "checkpoints"


def test_random_checkpoint_round_trips_without_a_contact_regression_file(tiny_checkpoint: Path) -> None:
    assert tiny_checkpoint.name == "esm2_t2_d64_custom.pt"
    assert not list(tiny_checkpoint.parent.glob("*contact-regression*"))
    saved = torch.load(tiny_checkpoint, weights_only=False)["model"]

    loaded = load_model(None, tiny_checkpoint, "cpu")

    assert (loaded.name, loaded.num_layers, loaded.embed_dim) == ("esm2_t2_d64_custom", 2, 64)
    assert loaded.device == torch.device("cpu") and not loaded.model.training
    assert len(loaded.weights_sha256) == 64
    state = loaded.model.state_dict()
    for key, value in saved.items():
        name = key.removeprefix("encoder.sentence_encoder.").removeprefix("encoder.")
        assert torch.equal(state[name], value), name


def test_a_real_architecture_is_named_like_the_published_file(tmp_path: Path) -> None:
    path = write_random_checkpoint(tmp_path, "8M")
    assert path.name == "esm2_t6_8M_UR50D.pt"
    loaded = load_model("esm2_t6_8M_UR50D", path, "cpu")
    assert (loaded.num_layers, loaded.embed_dim, loaded.model.attention_heads) == (6, 320, 20)


def test_the_same_seed_writes_the_same_weights(tmp_path: Path) -> None:
    def saved(name: str, seed: int) -> dict[str, torch.Tensor]:
        return torch.load(write_random_checkpoint(tmp_path / name, "tiny", seed), weights_only=False)["model"]

    first, again, other = saved("a.pt", 7), saved("b.pt", 7), saved("c.pt", 8)
    assert first.keys() == again.keys() and all(torch.equal(first[key], again[key]) for key in first)
    key = "encoder.sentence_encoder.layers.0.fc1.weight"
    assert not torch.equal(first[key], other[key])


def test_architecture_mismatch_names_both_shapes(tiny_checkpoint: Path) -> None:
    with pytest.raises(Invalid, match=r"2 layers, dimension 64.*not esm2_t6_8M_UR50D") as error:
        load_model("esm2_t6_8M_UR50D", tiny_checkpoint, "cpu")
    assert error.value.param == "model" and "Choose model esm2_t2_d64_custom" in str(error.value)


def test_neither_a_model_nor_weights_names_the_missing_parameter() -> None:
    with pytest.raises(Invalid, match=r"^model: is needed when no weights are given") as refused:
        load_model(None, None)
    assert refused.value.param == "model"


def test_unknown_model_name_lists_the_valid_ones() -> None:
    with pytest.raises(NotFound, match="model='esm2_t7_9M': is not an ESM-2 model") as error:
        load_model("esm2_t7_9M", None, "cpu")
    assert all(name in str(error.value) for name in ESM2_ARCHITECTURES)


@pytest.mark.parametrize("content", [b"not a checkpoint at all", b"", b"\x80\x04K\x01."])
def test_corrupt_file_is_named(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "esm2_t6_8M_UR50D.pt"
    path.write_bytes(content)
    with pytest.raises(Invalid, match=f"{path}: not a readable fair-esm checkpoint"):
        load_model("esm2_t6_8M_UR50D", path, "cpu")


def test_a_torch_file_that_is_not_esm2_is_named(tmp_path: Path) -> None:
    path = tmp_path / "other.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, path)
    with pytest.raises(Invalid, match=f"{path}: not a fair-esm ESM-2 checkpoint"):
        load_model(None, path, "cpu")


def test_missing_weights_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="no such file") as error:
        load_model("esm2_t6_8M_UR50D", tmp_path / "absent.pt", "cpu")
    assert str(error.value).startswith(f"weights='{tmp_path / 'absent.pt'}': ")


def test_no_weights_and_no_network_says_what_to_do(offline: Path) -> None:
    with pytest.raises(Unavailable) as error:
        load_model("esm2_t6_8M_UR50D", None, "cpu")
    message = str(error.value)
    assert error.value.param == "weights" and "could not download esm2_t6_8M_UR50D (no network?" in message
    assert "path of a local fair-esm checkpoint" in message and f"place esm2_t6_8M_UR50D.pt in {offline}" in message
    assert not offline.exists() or not list(offline.iterdir())  # no partial file left behind


def test_a_checkpoint_in_the_hub_cache_is_used_without_the_network(offline: Path) -> None:
    cached = write_random_checkpoint(offline, "8M")
    loaded = load_model("esm2_t6_8M_UR50D", None, "cpu")
    assert loaded.name == "esm2_t6_8M_UR50D" and cached.parent == offline


def test_cuda_without_a_gpu_is_a_user_error(tiny_checkpoint: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(Unavailable, match="device='cuda': was requested but PyTorch sees no CUDA GPU"):
        load_model(None, tiny_checkpoint, "cuda")
    assert load_model(None, tiny_checkpoint, "auto").device == torch.device("cpu")


def test_random_weights_command_writes_a_loadable_checkpoint(tmp_path: Path) -> None:
    from click.testing import CliRunner

    result = CliRunner().invoke(
        random_weights_command, [str(tmp_path / "out.pt"), "--arch", "tiny", "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    [written] = json.loads(result.output)
    assert written["model"] == "esm2_t2_d64_custom" and written["weights"] == "random"
    assert load_model(None, tmp_path / "out.pt", "cpu").num_layers == 2
