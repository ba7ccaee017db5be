"""torchrun support: rank detection, process group, DDP/FSDP wrapping, metric reduction, full state dicts.

Launched plainly, everything here is a no-op (world size 1). Under `torchrun --nproc_per_node N` the environment
carries RANK, WORLD_SIZE, LOCAL_RANK (and MASTER_ADDR/PORT); we use gloo on CPU and nccl on CUDA. Only rank 0
writes files and prints. Test: `pytest tests/train/test_distributed.py` (two gloo processes on CPU).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: str = "cpu"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def detect() -> DistInfo:
    """Rank layout from the torchrun environment (defaults: one process)."""
    rank = int(os.environ.get("RANK", 0))
    world = int(os.environ.get("WORLD_SIZE", 1))
    local = int(os.environ.get("LOCAL_RANK", rank))
    device = f"cuda:{local}" if torch.cuda.is_available() else "cpu"
    return DistInfo(rank, world, local, device)


def setup() -> DistInfo:
    """Initialise the default process group when launched with WORLD_SIZE > 1 (idempotent)."""
    info = detect()
    if info.enabled and not dist.is_initialized():
        backend = "nccl" if info.device.startswith("cuda") else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend=backend, rank=info.rank, world_size=info.world_size)
    return info


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def rank_seed(seed: int, rank: int) -> int:
    """A distinct, reproducible seed per rank (for anything that must differ across ranks, e.g. dropout)."""
    return (seed * 1_000_003 + rank * 7919) % (2**63 - 1)


def wrap(model: torch.nn.Module, info: DistInfo, fsdp: bool = False) -> torch.nn.Module:
    """DDP (replicated weights, averaged gradients) or FSDP2 `fully_shard` (every block's parameters, gradients
    and optimizer state sharded across ranks; for configs too big to replicate). Identity for one process."""
    if not info.enabled:
        return model
    if fsdp:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh("cuda" if info.device.startswith("cuda") else "cpu", (info.world_size,))
        for block in getattr(model, "blocks", []):
            fully_shard(block, mesh=mesh)
        return fully_shard(model, mesh=mesh)
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [info.local_rank] if info.device.startswith("cuda") else None
    return DDP(model, device_ids=ids)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The user module inside a DDP wrapper (FSDP2 shards in place: the module is its own wrapper)."""
    return model.module if hasattr(model, "module") and isinstance(model, torch.nn.parallel.DistributedDataParallel) \
        else model


def all_reduce_sum(values: list[float]) -> list[float]:
    """Sum of each value over ranks (float64; identity for one process)."""
    if not dist.is_initialized():
        return list(values)
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()


def any_rank(flag: bool) -> bool:
    """True if the flag is set on any rank (a signal caught by one rank stops all of them at the same step)."""
    return all_reduce_sum([float(flag)])[0] > 0


def model_state(model: torch.nn.Module, fsdp: bool) -> dict:
    """Full (unsharded) model state dict on CPU, with plain parameter names; collective under FSDP."""
    if fsdp and dist.is_initialized():
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return {k: v.detach().cpu().clone() for k, v in unwrap(model).state_dict().items()}


def optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, fsdp: bool) -> dict:
    if fsdp and dist.is_initialized():
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        return get_optimizer_state_dict(model, optimizer,
                                        options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return optimizer.state_dict()


def load_states(model: torch.nn.Module, optimizer: torch.optim.Optimizer, model_sd: dict, optim_sd: dict,
                fsdp: bool) -> None:
    """Load full state dicts (as written by `model_state`/`optimizer_state`) into a possibly sharded model."""
    if fsdp and dist.is_initialized():
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

        set_state_dict(model, optimizer, model_state_dict=model_sd, optim_state_dict=optim_sd,
                       options=StateDictOptions(full_state_dict=True))
        return
    unwrap(model).load_state_dict(model_sd)
    optimizer.load_state_dict(optim_sd)
