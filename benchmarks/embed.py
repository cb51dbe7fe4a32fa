"""Embedding throughput: orthovec's Encoder vs fair-esm's own batched extraction, in one run.

    python benchmarks/embed.py --arch 8M --n 500 [--device cpu|cuda] [--toks-per-batch 4096]
                               [--repeats 2] [--no-sdpa] [--precision auto|fp32|bf16] [--peak-tflops 989]

Sequences: the first N proteins of ../shared/data/proteomes/human_sprot2014.fasta.gz in file order
(Swiss-Prot 2014_01 human, sorted by accession; not a sample). Weights: a random checkpoint of the
real architecture written once to benchmarks/out/<model>.pt (speed does not depend on weight values).

Baseline = fair-esm's scripts/extract.py procedure: `FastaBatchedDataset(...).get_batch_indices(4096,
extra_toks_per_seq=1)`, the alphabet's batch converter with truncation_seq_length=1022, fp32,
`model(tokens, repr_layers=[last])`, mean over residues 1..L. orthovec = `orthovec.embedding.encoder.Encoder` in
truncate mode (the comparable setting) on the same model and sequences; bf16 autocast on CUDA
(`--precision` overrides: fp32 on CUDA, or bf16 on a CPU with native bf16 instructions).
Each side runs in its own fresh process (so peak memory is its own), the sides alternate, and the
best of --repeats is kept because this machine is shared. Prints residues/s, proteins/s, seconds,
peak memory, the speedup and the worst per-protein cosine between the two outputs.
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

from orthovec.embedding.architectures import MAX_RESIDUES, PRECISIONS
from orthovec.embedding.architectures import RANDOM_ARCHITECTURES as ARCHITECTURES
from orthovec.embedding.encoder import Encoder, resolve_precision
from orthovec.embedding.model import LoadedModel, architecture_name, load_model
from orthovec.embedding.random_weights import write_random_checkpoint

HUMAN = Path(__file__).resolve().parents[2] / "shared" / "data" / "proteomes" / "human_sprot2014.fasta.gz"
OUT = Path(__file__).resolve().parent / "out"


def human_proteins(n: int) -> list[tuple[str, str]]:
    """The first n human Swiss-Prot proteins (file order), as (accession label, sequence)."""
    records = []
    with gzip.open(HUMAN, "rt") as handle:
        for header, sequence in SimpleFastaParser(handle):
            records.append((header.split()[0], sequence))
            if len(records) == n:
                break
    return records


def fair_esm_extract(loaded: LoadedModel, records: list[tuple[str, str]]) -> np.ndarray:
    """fair-esm's scripts/extract.py loop (fp32, 4096 tokens a batch): mean representations, input order."""
    import esm

    model, alphabet = loaded.model, loaded.alphabet
    dataset = esm.data.FastaBatchedDataset([r[0] for r in records], [r[1] for r in records])
    batches = dataset.get_batch_indices(4096, extra_toks_per_seq=1)
    loader = torch.utils.data.DataLoader(
        dataset, collate_fn=alphabet.get_batch_converter(truncation_seq_length=1022), batch_sampler=batches
    )
    layer = loaded.num_layers
    row_of = {label: i for i, (label, _) in enumerate(records)}
    out = np.zeros((len(records), loaded.embed_dim), dtype=np.float32)
    with torch.no_grad():
        for labels, strs, tokens in loader:
            result = model(tokens.to(loaded.device), repr_layers=[layer], return_contacts=False)
            hidden = result["representations"][layer]
            for i, label in enumerate(labels):
                length = min(1022, len(strs[i]))
                out[row_of[label]] = hidden[i, 1 : length + 1].mean(0).float().cpu().numpy()
    return out


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_side(side: str, weights: Path, options: dict) -> tuple[float, np.ndarray, float]:
    """One timed side in this (fresh) process: seconds, embeddings, peak memory in MB."""
    loaded = load_model(None, weights, options["device"])
    records = human_proteins(options["n"])
    sequences = [s for _, s in records]
    if side == "fair-esm":
        run = lambda: fair_esm_extract(loaded, records)  # noqa: E731
        fair_esm_extract(loaded, records[:8])  # warm-up outside the timing, as for orthovec
    else:
        encoder = Encoder(
            loaded,
            long_seqs="truncate",
            toks_per_batch=options["toks_per_batch"],
            use_sdpa=options["sdpa"],
            precision=options["precision"],
        )
        run = lambda: encoder.embed(sequences)  # noqa: E731
        encoder.embed(sequences[:8])
    if loaded.device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    vectors = run()
    if loaded.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, vectors, peak_memory_mb(loaded.device)


def model_flops(weights: Path, sequences: list[str]) -> float:
    """2 × layer parameters per token, plus attention's 4 × tokens² × dim per layer (BOS/EOS counted)."""
    loaded = load_model(None, weights, "cpu")
    params = sum(p.numel() for p in loaded.model.layers.parameters())
    tokens = [min(len(s), MAX_RESIDUES) + 2 for s in sequences]
    attention = sum(4 * t * t * loaded.embed_dim * loaded.num_layers for t in tokens)
    return 2 * params * sum(tokens) + attention


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--arch", default="8M", choices=[a for a in ARCHITECTURES if a != "tiny"])
    parser.add_argument("--n", type=int, default=500, help="first N human proteins")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--toks-per-batch", type=int, default=4096, help="orthovec's budget (baseline: 4096)")
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs per side; best is kept")
    parser.add_argument("--no-sdpa", action="store_true", help="orthovec with explicit softmax attention")
    parser.add_argument("--precision", default="auto", choices=PRECISIONS, help="orthovec's (baseline: fp32)")
    parser.add_argument("--peak-tflops", type=float, help="the card's dense bf16 peak, for the share of peak")
    args = parser.parse_args()
    if not HUMAN.is_file():
        sys.exit(f"needs {HUMAN}")

    layers, dim, _ = ARCHITECTURES[args.arch]
    name = architecture_name(layers, dim)
    weights = OUT / f"{name}.pt"
    if not weights.is_file():
        write_random_checkpoint(weights, args.arch)
    sequences = [s for _, s in human_proteins(args.n)]
    residues = sum(min(len(s), MAX_RESIDUES) for s in sequences)
    options = {"device": args.device, "n": args.n, "toks_per_batch": args.toks_per_batch}
    options["sdpa"] = not args.no_sdpa
    options["precision"] = args.precision
    precision = resolve_precision(args.precision, torch.device(args.device))
    context = multiprocessing.get_context("spawn")
    best = {"fair-esm": float("inf"), "orthovec": float("inf")}
    memory: dict[str, float] = {}
    outputs: dict[str, np.ndarray] = {}
    for _ in range(args.repeats):
        for side in ("fair-esm", "orthovec"):
            with context.Pool(1) as pool:
                seconds, outputs[side], memory[side] = pool.apply(run_side, (side, weights, options))
            best[side] = min(best[side], seconds)
    a, b = outputs["fair-esm"], outputs["orthovec"]
    worst = float(((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).min())

    attention = "explicit softmax" if args.no_sdpa else "SDPA"
    print(
        f"{name} on {args.device} ({torch.get_num_threads()} threads), first {len(sequences)} human "
        f"proteins, {residues:,} residues (truncated at 1022); orthovec: {attention}, "
        f"{args.toks_per_batch} toks/batch, {precision}; "
        f"best of {args.repeats}"
    )
    memory_label = "peak MB" if args.device == "cpu" else "CUDA MB"
    print(f"| side | seconds | residues/s | proteins/s | {memory_label} |")
    print("|---|---:|---:|---:|---:|")
    for side in ("fair-esm", "orthovec"):
        seconds = best[side]
        print(
            f"| {side} | {seconds:.2f} | {residues / seconds:,.0f} | {len(sequences) / seconds:.1f} "
            f"| {memory[side]:,.0f} |"
        )
    print(f"speedup {best['fair-esm'] / best['orthovec']:.2f}x; worst per-protein cosine {worst:.6f}")
    if args.peak_tflops:
        tflops = model_flops(weights, sequences) / best["orthovec"] / 1e12
        print(
            f"orthovec: {tflops:.1f} TFLOP/s = {tflops / args.peak_tflops:.1%} of the {args.peak_tflops:g} "
            "TFLOP/s bf16 peak (FLOPs = 2 x layer params x tokens + attention)"
        )
    print(f"{memory_label}: max RSS of each side's own process (CPU) or max CUDA memory allocated.")


if __name__ == "__main__":
    main()
