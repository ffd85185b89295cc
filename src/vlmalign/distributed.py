"""The processes of one run: one, or several started by `accelerate launch` (docs/scaling.md).

A run is one process unless a launcher (accelerate, torchrun, MPI) started several; then each
process learns its place from accelerate's `PartialState`, generates its share of the work, and
the rows are gathered to the main process, the only one that writes the run store. One process
imports nothing here beyond the standard library, so a study of a scripted model still loads
no torch.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

T = TypeVar("T")

# Where launchers put the number of processes (torchrun, then MPI's): the variables accelerate
# itself reads.
WORLD_SIZE_VARIABLES = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


def launched_processes() -> int:
    """How many processes a launcher started for this run (1 when none did)."""
    for variable in WORLD_SIZE_VARIABLES:
        value = os.environ.get(variable, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    return 1


@dataclass(frozen=True)
class Processes:
    """This process's place among the processes of a run.

    Work is cut into `shares`, one per group of `group_size` consecutive processes: 1 for the
    `hf` engine (each process generates its own share), the tensor-parallel size for vLLM under
    a launcher (the processes of one model copy generate one share together, and only the
    first of them hands its rows in).
    """

    count: int = 1
    index: int = 0
    device: str | None = None  # this process's device under a launcher ("cuda:1", "cpu")
    group_size: int = 1
    state: Any = None  # accelerate's PartialState when there are several processes

    @property
    def is_main(self) -> bool:
        return self.index == 0

    @property
    def distributed(self) -> bool:
        return self.count > 1

    @property
    def shares(self) -> int:
        return self.count // self.group_size

    @property
    def share_index(self) -> int:
        return self.index // self.group_size

    @property
    def hands_in(self) -> bool:
        """Whether this process's rows are its share's (the others of its group repeat them)."""
        return self.index % self.group_size == 0

    def grouped(self, group_size: int) -> Processes:
        """The same processes, `group_size` of them to a share."""
        if group_size < 1 or self.count % group_size:
            raise ValueError(f"{self.count} processes do not make groups of {group_size}")
        return replace(self, group_size=group_size)

    def wait(self) -> None:
        """Every process reaches this point before any goes on (nothing to wait for alone)."""
        if self.distributed:
            self.state.wait_for_everyone()

    def leave(self) -> None:
        """Let go of the process group once this process has no collective left: a process
        that exits with the group still up can abort in torch's teardown
        ("terminate called without an active exception") and take the launch down."""
        if self.distributed:
            self.state.destroy_process_group()

    def gather(self, rows: list[T]) -> list[T]:
        """Every process's `rows`, in process order, on every process."""
        if not self.distributed:
            return list(rows)
        from accelerate.utils import gather_object

        gathered: list[T] = gather_object(rows)
        return gathered


def join(device: str = "auto") -> Processes:
    """This process's place: a single process, unless a launcher started several (then the
    process group is set up, on CPUs with gloo when `device` is a CPU or no GPU is present)."""
    if launched_processes() == 1:
        return Processes()
    import torch
    from accelerate import PartialState

    gpu = torch.cuda.is_available() if device == "auto" else torch.device(device).type != "cpu"
    state = PartialState(cpu=not gpu)
    own_device = str(state.device) if device == "auto" else device
    return Processes(state.num_processes, state.process_index, own_device, state=state)


def group_in_order(items: Sequence[T], key: Callable[[T], Hashable]) -> list[list[T]]:
    """`items` grouped by `key`, groups in the order of their first item, items in order."""
    groups: dict[Hashable, list[T]] = {}
    for item in items:
        groups.setdefault(key(item), []).append(item)
    return list(groups.values())


def deal(groups: Sequence[Sequence[T]], shares: int) -> list[list[T]]:
    """Groups dealt in turn: share i gets groups i, i + shares, ... (so that, over groups
    sorted by size, every share gets some of each size), each group whole."""
    dealt: list[list[T]] = [[] for _ in range(shares)]
    for position, group in enumerate(groups):
        dealt[position % shares].extend(group)
    return dealt
