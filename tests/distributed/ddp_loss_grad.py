"""Every fairness loss gives the single-process gradient under DDP (run with `torchrun --nproc_per_node 2`).

Each rank holds part of a fixed batch (uneven shards, one rank sometimes without usable rows), wraps a
tiny linear model in DDP, computes the loss and backpropagates. Before joining the process group every
rank computes the reference: the same steps in one process on the concatenated batch. Gradients, loss
values and (for `eps_deo`) the running estimates must agree to 1e-6 over two optimiser steps, so the
running state is checked too. Exits non-zero on any mismatch.

Used by `tests/test_ddp_losses.py`.
"""

from __future__ import annotations

import os
import sys
from datetime import timedelta

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from hf_fairmtl.losses import FAIRNESS_LOSSES, build_fairness_loss

TOLERANCE = 1e-6
FEATURES = 5
NUM_GROUPS = 3
ROWS = 24
SHARD_SPLIT = 10  # rank 0 gets rows [0, 10), rank 1 the other 14: shards need not be equal
STEPS = 2
# (num_classes, conditions, batch kind)
CASES = [
    (2, "both", "mixed"),
    (3, "both", "mixed"),
    (2, "negative", "mixed"),
    (2, "both", "rank1_unusable"),  # rank 1 has no usable rows: its shard still joins the collectives
    (2, "both", "one_group"),  # globally one group: the loss is 0 on every rank, nothing hangs
]


def make_batch(step: int, num_classes: int, kind: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A fixed batch (same on every rank): features, labels (some -100), groups (some -1)."""
    generator = torch.Generator().manual_seed(1000 * step + 10 * num_classes + len(kind))
    features = torch.randn(ROWS, FEATURES, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, num_classes, (ROWS,), generator=generator)
    groups = torch.randint(0, NUM_GROUPS, (ROWS,), generator=generator)
    labels[torch.rand(ROWS, generator=generator) < 0.15] = -100
    groups[torch.rand(ROWS, generator=generator) < 0.15] = -1
    if kind == "rank1_unusable":
        labels[SHARD_SPLIT:] = -100
    if kind == "one_group":
        groups = torch.where(groups >= 0, torch.ones_like(groups), groups)
    return features, labels, groups


def make_model(num_classes: int) -> torch.nn.Linear:
    torch.manual_seed(0)
    return torch.nn.Linear(FEATURES, num_classes).double()


def run_steps(name: str, num_classes: int, conditions: str, kind: str, rank: int | None) -> list[dict]:
    """Train `STEPS` SGD steps; `rank=None` is the single-process reference on the whole batch."""
    model = make_model(num_classes)
    wrapped = DistributedDataParallel(model) if rank is not None else model
    loss_fn = build_fairness_loss(name, NUM_GROUPS, num_classes, conditions=conditions).double()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    records = []
    for step in range(STEPS):
        features, labels, groups = make_batch(step, num_classes, kind)
        if rank is not None:
            rows = slice(0, SHARD_SPLIT) if rank == 0 else slice(SHARD_SPLIT, ROWS)
            features, labels, groups = features[rows], labels[rows], groups[rows]
        optimizer.zero_grad()
        loss = loss_fn(wrapped(features), labels, groups)
        loss.backward()
        records.append(
            {
                "loss": loss.detach().clone(),
                **{f"grad.{key}": param.grad.detach().clone() for key, param in model.named_parameters()},
                **{f"buffer.{key}": value.detach().clone() for key, value in loss_fn.state_dict().items()},
            }
        )
        optimizer.step()
    return records


def main() -> int:
    torch.set_num_threads(1)
    cases = [(name, *case) for name in sorted(FAIRNESS_LOSSES) for case in CASES]
    # Reference first, before the process group exists, so the losses run their single-process path.
    references = {case: run_steps(*case, rank=None) for case in cases}

    dist.init_process_group("gloo", timeout=timedelta(seconds=60))
    rank, world_size = dist.get_rank(), dist.get_world_size()
    if world_size != 2:
        print(f"expected 2 processes, got {world_size}", flush=True)
        return 2
    failures = []
    worst = 0.0
    for case in cases:
        for step, (ours, reference) in enumerate(zip(run_steps(*case, rank=rank), references[case], strict=True)):
            for key, expected in reference.items():
                diff = (ours[key].double() - expected.double()).abs().max().item()
                worst = max(worst, diff)
                if not diff < TOLERANCE:
                    failures.append(f"rank {rank} {case} step {step} {key}: |diff| = {diff:.3g}")
            if step == 0 and case[-1] != "one_group" and references[case][0]["loss"].item() == 0.0:
                failures.append(f"{case}: reference loss is 0, the case tests nothing")
    dist.barrier()
    for line in failures:
        print(line, flush=True)
    if rank == 0:
        print(f"checked {len(cases)} cases x {STEPS} steps; max |diff| = {worst:.3g}", flush=True)
    dist.destroy_process_group()
    if not failures and rank == 0:
        print("ALL OK", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
