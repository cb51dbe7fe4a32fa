"""Embedding throughput: orthovec's encoder vs fair-esm's own batched extraction, one run.

    python benchmarks/embed.py --arch 8M --n 500 [--device cpu|cuda] [--repeats 2] [--peak-tflops 989]

Baseline = fair-esm's extraction procedure (scripts/extract.py): `FastaBatchedDataset`
batches from `get_batch_indices(4096, extra_toks_per_seq=1)`, the alphabet's batch converter
truncating at 1022 residues, fp32, `model(tokens, repr_layers=[last])`, mean over residues.
orthovec = `indexer.encoder.Encoder` in truncate mode (the comparable setting) with the same
model and sequences: SDPA attention, fused QKV, no LM head; bf16 autocast on CUDA. Weights are
random (speed does not depend on their values). Sides alternate and the best of `--repeats` is
kept, because this machine is shared. Prints residues/s, proteins/s, peak memory, the speedup and
the worst per-protein cosine between the two outputs.
"""

from __future__ import annotations

import argparse
import gzip
import multiprocessing
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch
from Bio.SeqIO.FastaIO import SimpleFastaParser

from indexer.encoder import Encoder
from indexer.weights import ARCH_ALIASES, load_model, write_random_checkpoint

HUMAN = Path(__file__).resolve().parents[2] / "shared" / "data" / "proteomes" / "human_sprot2014.fasta.gz"
OUT = Path(__file__).resolve().parent / "out"


def human_proteins(n: int) -> list[tuple[str, str]]:
    """The first n human Swiss-Prot proteins (file order, i.e. by accession)."""
    records = []
    with gzip.open(HUMAN, "rt") as handle:
        for header, sequence in SimpleFastaParser(handle):
            records.append((header.split()[0], sequence))
            if len(records) == n:
                break
    return records


def fair_esm_extract(loaded, records: list[tuple[str, str]], toks_per_batch: int = 4096) -> np.ndarray:  # type: ignore[no-untyped-def]
    """fair-esm's scripts/extract.py loop, fp32, returning mean representations in input order."""
    import esm

    model, alphabet = loaded.model, loaded.alphabet
    dataset = esm.data.FastaBatchedDataset([r[0] for r in records], [r[1] for r in records])
    batches = dataset.get_batch_indices(toks_per_batch, extra_toks_per_seq=1)
    loader = torch.utils.data.DataLoader(
        dataset, collate_fn=alphabet.get_batch_converter(truncation_seq_length=1022), batch_sampler=batches
    )
    layer = loaded.num_layers
    order = {label: i for i, (label, _) in enumerate(records)}
    out = np.zeros((len(records), loaded.embed_dim), dtype=np.float32)
    with torch.no_grad():
        for labels, strs, tokens in loader:
            result = model(tokens.to(loaded.device), repr_layers=[layer], return_contacts=False)
            hidden = result["representations"][layer]
            for i, label in enumerate(labels):
                length = min(1022, len(strs[i]))
                out[order[label]] = hidden[i, 1 : length + 1].mean(0).float().cpu().numpy()
    return out


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn, device: torch.device) -> tuple[float, np.ndarray]:  # type: ignore[no-untyped-def]
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    result = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, result


def run_side(
    side: str, name: str, weights: Path, device: str, n: int, toks_per_batch: int
) -> tuple[float, np.ndarray, float]:
    """One timed side in a fresh process, so its peak memory is its own."""
    loaded = load_model(name, weights, device)
    records = human_proteins(n)
    if side == "fair-esm":
        fair_esm_extract(loaded, records[:8])  # warm-up outside the timing, as for orthovec
        seconds, out = timed(lambda: fair_esm_extract(loaded, records), loaded.device)
    else:
        encoder = Encoder(loaded, long_seqs="truncate", toks_per_batch=toks_per_batch)
        encoder.embed([s for _, s in records[:8]])
        seconds, out = timed(lambda: encoder.embed([s for _, s in records]), loaded.device)
    return seconds, out, peak_memory_mb(loaded.device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="8M", choices=[a for a in ARCH_ALIASES if a != "tiny"])
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--toks-per-batch", type=int, default=4096, help="orthovec's budget (baseline: 4096)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--peak-tflops", type=float, help="card's dense bf16 peak, for the share of peak")
    args = parser.parse_args()
    if not HUMAN.is_file():
        sys.exit(f"needs {HUMAN}")

    name, _ = ARCH_ALIASES[args.arch]
    weights = OUT / f"{name}.pt"
    if not weights.is_file():
        write_random_checkpoint(weights, args.arch)
    records = human_proteins(args.n)
    residues = sum(min(len(s), 1022) for _, s in records)
    context = multiprocessing.get_context("spawn")
    best = {"fair-esm": float("inf"), "orthovec": float("inf")}
    memory: dict[str, float] = {}
    outputs: dict[str, np.ndarray] = {}
    for _ in range(args.repeats):
        for side in ("fair-esm", "orthovec"):
            with context.Pool(1) as pool:
                seconds, outputs[side], memory[side] = pool.apply(
                    run_side, (side, name, weights, args.device, args.n, args.toks_per_batch)
                )
            best[side] = min(best[side], seconds)
    a, b = outputs["fair-esm"], outputs["orthovec"]
    worst = float(((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).min())

    loaded = load_model(name, weights, "cpu")
    params = sum(p.numel() for p in loaded.model.layers.parameters())
    print(
        f"{name} on {args.device} ({torch.get_num_threads()} threads), {len(records)} human proteins, "
        f"{residues:,} residues"
    )
    print(f"{'side':>9} {'seconds':>8} {'residues/s':>11} {'proteins/s':>10} {'peak MB':>8}")
    for side in ("fair-esm", "orthovec"):
        print(
            f"{side:>9} {best[side]:>8.2f} {residues / best[side]:>11,.0f} {len(records) / best[side]:>10.1f} "
            f"{memory[side]:>8.0f}"
        )
    print(f"speedup {best['fair-esm'] / best['orthovec']:.2f}x; worst per-protein cosine {worst:.6f}")
    if args.peak_tflops:
        tflops = 2 * params * residues / best["orthovec"] / 1e12  # attention FLOPs left out: a lower bound
        print(
            f"orthovec: {tflops:.1f} TFLOP/s = {tflops / args.peak_tflops:.1%} of the {args.peak_tflops} TFLOP/s peak"
        )
    print("peak MB: max RSS of each side's own process (CPU) or max CUDA memory allocated.")


if __name__ == "__main__":
    main()
