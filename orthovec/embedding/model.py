"""ESM-2 checkpoints: resolve, read, check and load them with fair-esm's own classes.

Where weights come from, in order: `--weights PATH` (a fair-esm checkpoint file), then
`$TORCH_HOME/hub/checkpoints/<name>.pt` (torch.hub.get_dir(), where fair-esm's hub loader caches
them), then a download from fair-esm's URL into that same place. The contact-regression file that
fair-esm's local loader insists on is irrelevant for embeddings and never required.
"""

from __future__ import annotations

import argparse
import hashlib
import pickle
import shutil
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path

import esm
import torch
from esm.model.esm2 import ESM2

from orthovec.embedding.architectures import CUSTOM_NAME, ESM2_ARCHITECTURES, architecture_name
from orthovec.schemas.errors import Invalid, NotFound, Unavailable

HUB_URL = "https://dl.fbaipublicfiles.com/fair-esm/models/{name}.pt"
DOWNLOAD_TIMEOUT_S = 30
#: Key that `orthovec random-weights` adds to its checkpoints, so that results computed from them can
#: say they carry no biology (fair-esm ignores extra keys).
RANDOM_MARKER = "orthovec_random_weights"


@dataclass(frozen=True)
class LoadedModel:
    """An eval-mode fair-esm ESM-2 on its device, with what callers record as provenance."""

    model: ESM2
    alphabet: esm.data.Alphabet
    name: str
    num_layers: int
    embed_dim: int
    weights_sha256: str  # of the checkpoint file: embeddings from other weights are not comparable
    device: torch.device
    random_weights: bool = False  # written by `orthovec random-weights`: vectors carry no biology


def resolve_device(device: str) -> torch.device:
    """ "auto" -> cuda when PyTorch sees a GPU, else cpu; "cuda" without one is the user's to fix."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise Unavailable(
            "was requested but PyTorch sees no CUDA GPU.", param="device", value=device, choices=("auto", "cpu")
        )
    try:
        return torch.device(device)
    except RuntimeError as err:
        raise Invalid(
            "is not a device PyTorch knows.", param="device", value=device, choices=("auto", "cpu", "cuda")
        ) from err


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def read_checkpoint(path: Path) -> dict:
    """The checkpoint's dict, or an `Invalid` naming the file."""
    unreadable = (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, AttributeError)
    try:
        # torch >= 2.6 loads with weights_only=True and refuses fair-esm's pickled argparse.Namespace
        # config; allow-listing it keeps the safe unpickler for the checkpoints fair-esm publishes.
        with torch.serialization.safe_globals([argparse.Namespace]):
            data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "Unsupported global" not in str(err):
            raise Invalid(f"{path}: not a readable fair-esm checkpoint ({_first_line(err)}).") from err
        # Older fair-esm checkpoints pickle other config objects. The user pointed at this file (or
        # placed it in the hub cache), which fair-esm itself would unpickle fully, so do the same.
        try:
            data = torch.load(path, map_location="cpu", weights_only=False)
        except unreadable as full_err:
            raise Invalid(f"{path}: not a readable fair-esm checkpoint ({_first_line(full_err)}).") from err
    except unreadable as err:
        raise Invalid(f"{path}: not a readable fair-esm checkpoint ({_first_line(err)}).") from err
    if not isinstance(data, dict) or "model" not in data or "cfg" not in data:
        raise Invalid(f"{path}: not a fair-esm ESM-2 checkpoint (expected the keys 'model' and 'cfg').")
    config = data["cfg"].get("model") if isinstance(data["cfg"], dict) else None
    if isinstance(config, dict):  # fair-esm reads attributes; accept a plain dict as well
        data["cfg"]["model"] = config = argparse.Namespace(**config)
    fields = ("encoder_layers", "encoder_embed_dim", "encoder_attention_heads", "token_dropout")
    if not all(hasattr(config, field) for field in fields):
        raise Invalid(f"{path}: not an ESM-2 checkpoint (cfg['model'] lacks {', '.join(fields)}).")
    return data


def is_random_checkpoint(path: Path) -> bool:
    """Whether `path` was written by `orthovec random-weights` (its embeddings measure no biology)."""
    return RANDOM_MARKER in read_checkpoint(path)


def _download(name: str, path: Path) -> None:
    """fair-esm's hub URL into the hub cache; a timeout keeps an offline machine from hanging."""
    partial = path.with_suffix(".pt.partial")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        url = HUB_URL.format(name=name)
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response, open(partial, "wb") as out:
            shutil.copyfileobj(response, out, 1 << 22)
        partial.replace(path)
    except (urllib.error.URLError, OSError, ValueError) as err:
        partial.unlink(missing_ok=True)
        raise Unavailable(
            f"could not download {name} (no network? {_first_line(err)}).",
            param="weights",
            hint=f"Give the weights as the path of a local fair-esm checkpoint, or place {name}.pt in {path.parent}.",
        ) from err


def hub_checkpoint(model_name: str) -> Path:
    """Where fair-esm's hub loader caches a model's checkpoint (it may not be there)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / f"{model_name}.pt"


def checkpoint_path(model_name: str, weights: Path | None) -> Path:
    """The checkpoint file to read: `weights`, else the hub cache (downloaded into it if absent)."""
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise NotFound("no such file.", param="weights", value=path)
        return path
    path = hub_checkpoint(model_name)
    if path.is_file():
        return path
    if model_name not in ESM2_ARCHITECTURES:
        raise NotFound(
            "has no published weights.", param="model", value=model_name, hint="Give the weights of its checkpoint."
        )
    _download(model_name, path)
    return path


def load_model(model_name: str | None, weights: Path | None, device: str = "auto") -> LoadedModel:
    """An eval-mode ESM-2 from `weights` or the hub cache, checked against `model_name`.

    `model_name` None is allowed with `weights` and means "whatever architecture the file holds".
    """
    if model_name is None and weights is None:
        raise Invalid("is needed when no weights are given: name an ESM-2 model or give its checkpoint.", param="model")
    if model_name is not None and model_name not in ESM2_ARCHITECTURES and not CUSTOM_NAME.match(model_name):
        raise NotFound("is not an ESM-2 model.", param="model", value=model_name, choices=list(ESM2_ARCHITECTURES))
    resolved = resolve_device(device)
    path = checkpoint_path(str(model_name), weights)
    data = read_checkpoint(path)
    config = data["cfg"]["model"]
    layers, dim = int(config.encoder_layers), int(config.encoder_embed_dim)
    heads = int(config.encoder_attention_heads)
    found = architecture_name(layers, dim)
    expected = ESM2_ARCHITECTURES.get(found)
    if model_name is not None and (found != model_name or (expected and expected[2] != heads)):
        raise Invalid(
            f"{path} holds an ESM-2 with {layers} layers, dimension {dim} and {heads} heads ({found}), not "
            f"{model_name}.",
            param="model",
            value=model_name,
            hint=f"Choose model {found}, or give the weights of a {model_name} checkpoint.",
        )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Regression weights not found")
        try:
            # Not fair-esm's local loader: it requires <name>-contact-regression.pt beside the file.
            model, alphabet = esm.pretrained.load_model_and_alphabet_core(found, data, None)
        except (RuntimeError, KeyError, AttributeError, TypeError, ValueError) as err:
            raise Invalid(f"{path}: the weights do not fit ESM-2 {found} ({_first_line(err)}).") from err
    return LoadedModel(
        model=model.eval().to(resolved),
        alphabet=alphabet,
        name=found,
        num_layers=layers,
        embed_dim=dim,
        weights_sha256=file_sha256(path),
        device=resolved,
        random_weights=RANDOM_MARKER in data,
    )
