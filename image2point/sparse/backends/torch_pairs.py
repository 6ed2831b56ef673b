"""The torch backend's form of a kernel map: pairs grouped by offset, in the orders its scatters need."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import torch

from image2point.sparse.backends import narrow_conv, offset_groups
from image2point.sparse.kernel_map import KernelMap, sort_within_offsets


@dataclass(frozen=True)
class TorchPairs:
    """A kernel map in the orders its scatters need: pairs grouped by offset and, within an offset,
    sorted by the row they scatter into — by output for the forward pass, by input for the input
    gradient (the map's own order when its inputs ascend too, else sorted on first use; inference never
    needs it). ``index_add_`` with sorted indices is orders of magnitude faster on multi-threaded CPUs
    than with unsorted ones.
    """

    forward_gather: torch.Tensor  # input rows
    forward_scatter: torch.Tensor  # output rows, ascending within each offset
    counts: tuple[int, ...]
    num_in: int
    num_out: int
    identity_offset: int | None
    gather_ascending: bool = False
    # Offset-group plans (offset_groups.plan_groups) by group row cap, built on first use.
    offset_plans: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def max_count(self) -> int:
        return max(self.counts, default=0)

    @cached_property
    def backward_order(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(output rows to gather, input rows to scatter into, ascending within each offset)."""
        if self.gather_ascending:
            return self.forward_scatter, self.forward_gather
        scatter, gather = sort_within_offsets(self.forward_gather, self.forward_scatter, self.counts, self.num_in)
        return gather, scatter


    @cached_property
    def neighbour_table(self) -> torch.Tensor:
        """Input row of each (output, offset) for :mod:`.narrow_conv` (built on first use)."""
        return narrow_conv.neighbour_table(self.forward_gather, self.forward_scatter, self.counts, self.num_in,
                                           self.num_out)

    def offset_plan(self, channels: tuple[int, int], element_size: int) -> tuple[offset_groups.OffsetGroup, ...]:
        """The offset groups for rows of ``channels`` (input, output) widths."""
        max_rows = offset_groups.max_group_rows(self.max_count, channels, element_size)
        if max_rows not in self.offset_plans:
            self.offset_plans[max_rows] = offset_groups.plan_groups(
                self.forward_gather, self.forward_scatter, self.counts, self.num_in, self.num_out,
                self.identity_offset, max_rows)
        return self.offset_plans[max_rows]


def prepare(kernel_map: KernelMap) -> TorchPairs:
    return TorchPairs(kernel_map.in_index, kernel_map.out_index, kernel_map.counts, kernel_map.num_in,
                      kernel_map.num_out, kernel_map.identity_offset, kernel_map.in_ascending)


def _spans(pairs: TorchPairs):
    """(offset, start, end) of every non-empty offset except the identity one."""
    start = 0
    for offset, count in enumerate(pairs.counts):
        end = start + count
        if count and offset != pairs.identity_offset:
            yield offset, start, end
        start = end
