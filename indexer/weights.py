"""ESM-2 checkpoints: find, download, verify and load them with fair-esm's own classes.

fair-esm checkpoints pickle an `argparse.Namespace` as their config; torch >= 2.6 loads with
`weights_only=True` by default and refuses it, so the Namespace is allow-listed explicitly. The
contact-regression file fair-esm's local loader insists on is irrelevant for embeddings and is
not required.
"""

from __future__ import annotations

import argparse
import hashlib
import pickle
import urllib.error
import warnings
from dataclasses import dataclass
from pathlib import Path

import click
import esm
import torch
from esm.model.esm2 import ESM2

from schemas.errors import UserError

#: name -> (layers, embedding dim, attention heads), as published by fair-esm.
ESM2_ARCHITECTURES: dict[str, tuple[int, int, int]] = {
    "esm2_t6_8M_UR50D": (6, 320, 20),
    "esm2_t12_35M_UR50D": (12, 480, 20),
    "esm2_t30_150M_UR50D": (30, 640, 20),
    "esm2_t33_650M_UR50D": (33, 1280, 20),
    "esm2_t36_3B_UR50D": (36, 2560, 40),
    "esm2_t48_15B_UR50D": (48, 5120, 40),
}
HUB_URL = "https://dl.fbaipublicfiles.com/fair-esm/models/{name}.pt"

#: Short names for `orthovec random-weights --arch`; "tiny" is for unit tests only.
ARCH_ALIASES = {
    "tiny": ("esm2_t2_d64_custom", (2, 64, 4)),
    **{name.split("_")[2]: (name, arch) for name, arch in ESM2_ARCHITECTURES.items()},
}


@dataclass(frozen=True)
class LoadedModel:
    model: ESM2
    alphabet: esm.data.Alphabet
    name: str
    num_layers: int
    embed_dim: int
    weights_sha256: str
    device: torch.device


def architecture_name(layers: int, dim: int) -> str:
    """The published model with this shape, else a descriptive custom name."""
    for name, (n_layers, n_dim, _) in ESM2_ARCHITECTURES.items():
        if (n_layers, n_dim) == (layers, dim):
            return name
    return f"esm2_t{layers}_d{dim}_custom"


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was requested but PyTorch sees no CUDA GPU; use --device auto or cpu.")
    return torch.device(device)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def _first_line(err: Exception) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def _read_checkpoint(path: Path) -> dict:
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            data = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as err:
        raise UserError(f"{path}: not a readable fair-esm checkpoint ({_first_line(err)}).") from err
    if not isinstance(data, dict) or "model" not in data or "cfg" not in data:
        raise UserError(f"{path}: not a fair-esm checkpoint (expected the keys 'model' and 'cfg').")
    return data


def _hub_checkpoint(name: str) -> Path:
    """$TORCH_HOME/hub/checkpoints/<name>.pt, downloading it once if needed."""
    path = Path(torch.hub.get_dir()) / "checkpoints" / f"{name}.pt"
    if path.is_file():
        return path
    if name not in ESM2_ARCHITECTURES:
        raise UserError(f"No weights for {name}: pass --weights PATH to its fair-esm checkpoint.")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(HUB_URL.format(name=name), str(path), progress=True)
    except (urllib.error.URLError, OSError, ValueError) as err:
        raise UserError(
            f"Could not download {name} ({err}; no network?). Pass --weights PATH to a local fair-esm "
            f"checkpoint, or place {name}.pt in {path.parent}."
        ) from err
    return path


def load_model(model_name: str | None, weights: Path | None, device: str = "auto") -> LoadedModel:
    """An eval-mode ESM-2 on `device`; `model_name` None means "whatever the checkpoint is"."""
    if model_name is not None and model_name not in ESM2_ARCHITECTURES and not model_name.endswith("_custom"):
        raise UserError(f"Unknown model {model_name!r}; choose one of {', '.join(ESM2_ARCHITECTURES)}.")
    if weights is None and model_name is None:
        raise UserError("Pass --model NAME or --weights PATH.")
    path = Path(weights) if weights is not None else _hub_checkpoint(str(model_name))
    data = _read_checkpoint(path)
    config = data["cfg"]["model"]
    layers, dim = int(config.encoder_layers), int(config.encoder_embed_dim)
    found = architecture_name(layers, dim)
    if model_name is not None and found != model_name:
        raise UserError(
            f"{path} holds an ESM-2 with {layers} layers and dimension {dim} ({found}), not {model_name}. "
            "Pass the matching --model, or the right checkpoint."
        )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Regression weights not found")
        try:
            model, alphabet = esm.pretrained.load_model_and_alphabet_core(found, data, None)
        except (RuntimeError, KeyError, AttributeError) as err:
            raise UserError(f"{path}: the checkpoint does not fit ESM-2 ({_first_line(err)}).") from err
    resolved = resolve_device(device)
    return LoadedModel(
        model=model.eval().to(resolved),
        alphabet=alphabet,
        name=found,
        num_layers=layers,
        embed_dim=dim,
        weights_sha256=file_sha256(path),
        device=resolved,
    )


def write_random_checkpoint(path: Path, arch: str, seed: int = 0) -> Path:
    """A randomly initialised ESM-2 of a real architecture, in fair-esm's checkpoint layout.

    For tests and benchmarks: throughput does not depend on weight values, and the loading code
    is the one users run with pretrained weights.
    """
    if arch not in ARCH_ALIASES:
        raise UserError(f"Unknown --arch {arch!r}; choose one of {', '.join(ARCH_ALIASES)}.")
    _, (layers, dim, heads) = ARCH_ALIASES[arch]
    torch.manual_seed(seed)
    model = ESM2(num_layers=layers, embed_dim=dim, attention_heads=heads, alphabet="ESM-1b", token_dropout=True)
    state = {
        f"encoder.{key}": value for key, value in model.state_dict().items() if "contact_head.regression" not in key
    }
    config = argparse.Namespace(
        encoder_layers=layers, encoder_embed_dim=dim, encoder_attention_heads=heads, token_dropout=True
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": state, "cfg": {"model": config}}, path)
    return path


@click.command("random-weights")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--arch", type=click.Choice(list(ARCH_ALIASES)), default="8M", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def random_weights_command(out: Path, arch: str, seed: int) -> None:
    """Write a random-weight ESM-2 checkpoint of a real architecture (for tests and benchmarks).

    Speed does not depend on weight values, so benchmarks and CI run the real code paths without
    the pretrained weights. Embeddings from random weights carry no biology.
    """
    path = write_random_checkpoint(out, arch, seed)
    click.echo(f"{path}: random {ARCH_ALIASES[arch][0]} ({path.stat().st_size / 1e6:.1f} MB)")
