"""What the network builders need to know of one inflated backbone stage, whatever built it (a module-
position spec in :mod:`image2point.models.networks` or a traced forward in
:mod:`image2point.models.graph_backbone`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StageInfo:
    name: str
    in_channels: int
    out_channels: int
    # Times the stage halves the resolution of its input.
    num_downsamples: int
