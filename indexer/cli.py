"""Click commands of the indexer stage: `random-weights`.

`index` and `species` compose the indexer with the store, so they live on the top floor
(`orthovec/build/cli.py`).
"""

from __future__ import annotations

from pathlib import Path

import click

from orthovec.core.options import emit_rows, number_option, output_format
from orthovec.embedding.architectures import RANDOM_ARCHITECTURES, architecture_name


@click.command("random-weights")
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--arch", type=click.Choice(list(RANDOM_ARCHITECTURES)), default="8M", show_default=True)
@number_option("--seed", rule="seed", default=0, show_default=True)
@output_format()
def random_weights_command(out: Path, arch: str, seed: int, fmt: str) -> None:
    """Write a random-weight ESM-2 checkpoint of a real architecture to OUT (a .pt file or a directory).

    For tests and benchmarks: speed does not depend on weight values, so they run the real loading
    and embedding code without the pretrained weights. Embeddings from random weights carry no biology.

    Example: orthovec random-weights /tmp/esm2_t6_8M_UR50D.pt --arch 8M
    """
    from orthovec.embedding.random_weights import write_random_checkpoint

    path = write_random_checkpoint(out, arch, seed)
    layers, dim, _ = RANDOM_ARCHITECTURES[arch]
    row = {"model": architecture_name(layers, dim), "arch": arch, "seed": seed, "weights": "random"}
    emit_rows([{**row, "megabytes": round(path.stat().st_size / 1e6, 1), "checkpoint": path}], fmt)


COMMANDS: list[click.Command] = [random_weights_command]
