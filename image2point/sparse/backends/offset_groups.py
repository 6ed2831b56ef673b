"""Sparse convolution with the kernel offsets batched: a few ``bmm`` calls instead of one GEMM per offset.

The per-offset loop of :mod:`.torch_backend` issues a gather, a GEMM and a scatter-add for each of up to
K³ offsets, per convolution and per gradient. On a GPU each of those is a kernel launch, most of them on
a few thousand rows, so a network runs far below the device's rate. Here the offsets of a map (all but
the identity offset, which stays one plain matmul) are sorted by pair count and cut into groups of
similar counts; each group is padded to its largest count and runs as one gather, one ``bmm`` over the
offsets of the group and one ``index_add_``. Padding slots read row 0 of the input and add into a dummy
row past the output (dropped), so they cost FLOPs but change nothing. A group's buffers are capped at
:data:`GROUP_BUFFER_BYTES`, so memory stays bounded on big maps (whose GEMMs are big enough anyway).

The plan (the padded index arrays of every group) is built once per kernel map and buffer cap, on the
map's device, and shared by the forward pass and both gradients.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# A group of offsets is padded to its first (largest) count; an offset joins it only if its own count is
# at least this share of that count, so at most 1 - MIN_FILL of a group's FLOPs are padding.
MIN_FILL = 0.75
# Cap on one group's gathered (or product) buffer.
GROUP_BUFFER_BYTES = 2**29


@dataclass(frozen=True)
class OffsetGroup:
    """Offsets run as one ``bmm``: ``size`` offsets, each padded to ``width`` pairs (row-major slots)."""

    offsets: torch.Tensor  # [size] offset ids
    width: int
    in_rows: torch.Tensor  # [size * width] input row of each slot; padding: 0 (gathers only)
    in_rows_or_dummy: torch.Tensor  # the same, padding: num_in (a dummy row to scatter into)
    out_rows_or_dummy: torch.Tensor  # output row of each slot; padding: num_out (dummy or zero row)

    @property
    def size(self) -> int:
        return self.offsets.numel()


def group_offsets(counts: tuple[int, ...], skip: int | None, max_rows: int) -> list[list[int]]:
    """Offsets (except ``skip`` and empty ones) in groups of similar count, largest first, each group at
    most ``max_rows`` padded slots (a single offset may exceed it: it runs alone)."""
    order = sorted((offset for offset, count in enumerate(counts) if count and offset != skip),
                   key=lambda offset: -counts[offset])
    groups: list[list[int]] = []
    for offset in order:
        if groups:
            group = groups[-1]
            width = counts[group[0]]
            if counts[offset] >= MIN_FILL * width and (len(group) + 1) * width <= max_rows:
                group.append(offset)
                continue
        groups.append([offset])
    return groups


def plan_groups(in_index: torch.Tensor, out_index: torch.Tensor, counts: tuple[int, ...], num_in: int,
                num_out: int, skip: int | None, max_rows: int) -> tuple[OffsetGroup, ...]:
    """The padded slot arrays of every group (see :func:`group_offsets`)."""
    device = in_index.device
    starts = [0]
    for count in counts:
        starts.append(starts[-1] + count)
    plan = []
    for offsets in group_offsets(counts, skip, max_rows):
        width = counts[offsets[0]]
        first = torch.tensor([starts[offset] for offset in offsets], device=device)
        sizes = torch.tensor([counts[offset] for offset in offsets], device=device)
        step = torch.arange(width, device=device)
        valid = (step[None, :] < sizes[:, None]).view(-1)
        pair = (first[:, None] + step[None, :]).view(-1).clamp_(max=max(in_index.numel() - 1, 0))
        in_rows = in_index[pair]
        plan.append(OffsetGroup(
            torch.tensor(offsets, device=device), width,
            torch.where(valid, in_rows, 0),
            torch.where(valid, in_rows, num_in),
            torch.where(valid, out_index[pair], num_out),
        ))
    return tuple(plan)


def max_group_rows(max_count: int, widths: tuple[int, int], element_size: int) -> int:
    """Slots per group under :data:`GROUP_BUFFER_BYTES` for rows of ``widths`` channels (never fewer
    than the busiest offset's pairs, which must fit in one group)."""
    return max(GROUP_BUFFER_BYTES // (element_size * max(max(widths), 1)), max_count)


def _group_filters(filters: torch.Tensor, group: OffsetGroup) -> torch.Tensor:
    """``[size, C_out, C_in]`` filters of a group's offsets (from ``[C_out, K³, C_in]``)."""
    return filters.index_select(1, group.offsets).transpose(0, 1)


def forward(features: torch.Tensor, filters: torch.Tensor, plan: tuple[OffsetGroup, ...],
            out: torch.Tensor) -> torch.Tensor:
    """``out[j] += features[i] @ W[k]`` for every pair of every group; ``out`` has one dummy row past the
    outputs (``[num_out + 1, C_out]``) that padding slots add into."""
    for group in plan:
        gathered = features.index_select(0, group.in_rows).view(group.size, group.width, -1)
        product = torch.bmm(gathered, _group_filters(filters, group).transpose(1, 2))
        out.index_add_(0, group.out_rows_or_dummy, product.view(-1, out.shape[1]).to(out.dtype))
    return out


def backward(features: torch.Tensor, grad_out: torch.Tensor, filters: torch.Tensor,
             plan: tuple[OffsetGroup, ...], grad_features: torch.Tensor | None,
             grad_filters: torch.Tensor | None) -> None:
    """Both gradients from one gather of the output gradient per group.

    ``grad_out`` has a zero row past the outputs (padding slots gather it, so they add nothing to the
    filter gradient); ``grad_features`` (``[num_in + 1, C_in]``, or None) a dummy row past the inputs;
    ``grad_filters`` (``[C_out, K³, C_in]``, or None) receives each grouped offset's gradient.
    """
    for group in plan:
        grad_rows = grad_out.index_select(0, group.out_rows_or_dummy).view(group.size, group.width, -1)
        weights = _group_filters(filters, group)
        if grad_filters is not None:
            inputs = features.index_select(0, group.in_rows).view(group.size, group.width, -1)
            grad_filters.index_copy_(1, group.offsets, torch.bmm(grad_rows.transpose(1, 2), inputs).transpose(0, 1))
        if grad_features is not None:
            product = torch.bmm(grad_rows, weights)
            grad_features.index_add_(0, group.in_rows_or_dummy,
                                     product.view(-1, grad_features.shape[1]).to(grad_features.dtype))
