"""The paper's fourteen tables as grids of runs (Xu et al., "Image2Point", ECCV 2022): one module per main
table (1-7), registered in order, then the stability tables (8-14) as views of their runs, then the studies
of ours that are no table of the paper (convergence)."""

from image2point.experiments.tables import (  # noqa: F401  (each registers its table)
    table1,
    table2,
    table3,
    table4,
    table5,
    table6,
    table7,
)
from image2point.experiments.tables.stability import register_stability_tables

register_stability_tables()

from image2point.experiments.tables import convergence  # noqa: E402,F401  (not a paper table: registered last)
