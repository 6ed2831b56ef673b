"""The paper's claims as data, and their verdicts from finished runs.

A claim compares two rows of one table in one column: the paper says row A is above (or below) row B.
``image2point experiment claims --scale small --out-dir DIR`` reads the runs of those cells under DIR
(their ``outcomes.npz``, :mod:`image2point.train.outcomes`), pairs them by seed and fold, and writes the
paired difference A - B with its 95 % bootstrap interval and the verdict it supports
(:mod:`image2point.experiments.paired`) into ``DIR/claims.md`` and ``DIR/claims.json``, or names the runs
that are missing. Claims (a)-(d) are the ones docs/results reads the tables against; Table 2's is the
paper's Section 4.2, Table 4's its Section 4.5 (one source under two schemes: two columns), Table 6's its
Section 4.7 (a deeper backbone against a shallower one: two columns).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from image2point.checkpoint import atomic_write
from image2point.errors import ConfigError
from image2point.experiments.paired import (
    DEFAULT_REPLICATES,
    Direction,
    Measure,
    PairedDifference,
    Verdict,
    pair_units,
    paired_difference,
)
from image2point.experiments.plan import UNAVAILABLE, ExperimentContext, PlannedRun, plan_table
from image2point.experiments.scales import PAPER, SMALL
from image2point.experiments.specs import get_table
from image2point.train.outcomes import (
    COUNT,
    OUTCOMES_FILE,
    PREDICTION,
    TARGET,
    ClassificationOutcomes,
    Outcomes,
    read_outcomes,
)

CLAIMS_COMMAND = "claims"
CLAIMS_MD, CLAIMS_JSON = "claims.md", "claims.json"
BOOTSTRAP_SEED = 0
# Run ids named in a claim's "no verdict" line (claims.json lists them all).
MISSING_SHOWN = 3


@dataclass(frozen=True)
class Comparison:
    """Row A in ``column`` against row B in ``column_b`` (None: the same column), as the table labels them at
    one scale; both cells must test the same units (same dataset and folds), so that they pair."""

    row_a: str
    row_b: str
    column: str
    column_b: str | None = None

    @property
    def cell_a(self) -> tuple[str, str]:
        return self.row_a, self.column

    @property
    def cell_b(self) -> tuple[str, str]:
        return self.row_b, self.column if self.column_b is None else self.column_b

    def describe_b(self) -> str:
        """Row B, with its column when that is not A's."""
        return self.row_b if self.column_b is None else f"{self.row_b} ({self.column_b})"


@dataclass(frozen=True)
class Claim:
    """A claim of the paper: ``direction`` of A - B in a table's cells at each scale, and where it says so."""

    name: str
    statement: str
    table: str
    direction: Direction
    reference: str
    cells: Mapping[str, Comparison] = field(default_factory=dict)


TABLE1_SCHEME = "I,O,µ,σ,W,b"
# Claim (b) on the real sources at small scale: the released checkpoint against the same network from scratch.
REAL_SOURCE_PAIRS = (("MobileNetV1 ImageNet-1K · ModelNet40", "table4", "ImageNet-1K · MobileNetV1 ×0.25",
                      "from scratch · MobileNetV1 ×0.25", "ModelNet40 · I,O,µ,σ,W,b"),
                     ("ESPNet-C Cityscapes · SemanticKITTI", "table5", "segmentation: Cityscapes · ESPNet-C",
                      "from scratch · ESPNet-C", "SemanticKITTI"))
# Table 2's projection-based claim at small scale: no Cityscapes HRNet exists here, the released Cityscapes
# ESPNet-C of ../shared stands in its place on the same range images (experiments/tables/table2.py).
TABLE2_ESPNET_CLAIM = "Table 2 · range images, ESPNet-C Cityscapes"
TABLE7_A, TABLE7_B = "learned T, per conv, default init", "default T (authors' z-axis)"
TABLE7_PAPER_A = "NST (non-shared T)"


def _across_depths(row_a: str, row_b: str, depth_a: int, depth_b: int | None = None) -> dict[str, Comparison]:
    """Table 6's cells at both scales: row A at depth ``depth_a`` (0 shallowest) against row B at ``depth_b``
    (None: the same depth); its columns are the depths at either scale."""
    comparisons = {}
    for scale in (SMALL, PAPER):
        depths = get_table("table6").layout(scale).columns
        comparisons[scale] = Comparison(row_a, row_b, depths[depth_a], None if depth_b is None else depths[depth_b])
    return comparisons


CLAIMS: tuple[Claim, ...] = (
    # The paper has no frozen random backbone; its own evidence for (a) is the next claim's.
    Claim("a", "I,O on a frozen image-pretrained backbone beats I,O on a frozen random one", "table4",
          Direction.A_ABOVE_B,
          "Section 4.1: 'pretrained 2D image models can provide a good representation for 3D point-clouds'",
          {SMALL: Comparison("CIFAR-10", "random, frozen", "ModelNet40 · I,O")}),
    Claim("a · linear network", "linear I,O around the frozen pretrained backbone beats the same linear layers "
          "with no backbone between them", "table1", Direction.A_ABOVE_B,
          "Section 4.1: 'compared with the linear network formed by linear input and output layer, the introduced "
          "3D ConvNet [...] improves performance from 8.91% to 69.74%'",
          {SMALL: Comparison("linear I/O", "linear network", "ModelNet40"),
           PAPER: Comparison("linear I,O", "linear network (w/o backbone)", "ModelNet40")}),
    *(Claim(f"b · {column}", "finetuning I,O,µ,σ,W,b of the pretrained network beats training from scratch",
            "table1", Direction.A_ABOVE_B,
            "Section 4.1: 'as we gradually relaxing the freezing parameters [...] even surpassing "
            "training-from-scratch performance'",
            {SMALL: Comparison(TABLE1_SCHEME, "scratch", column),
             PAPER: Comparison(TABLE1_SCHEME, "from scratch", column)})
      for column in ("ModelNet40", "SemanticKITTI")),
    *(Claim(f"b · {label}", "finetuning I,O,µ,σ,W,b of the pretrained network beats training from scratch "
            "(a real released checkpoint, against the same network from scratch)", table, Direction.A_ABOVE_B,
            "Section 4.1 and Tables 4-5: the pretrained rows against 'from scratch'",
            {SMALL: Comparison(row_a, row_b, column)})
      for label, table, row_a, row_b, column in REAL_SOURCE_PAIRS),
    # The paper's Table 7 is on ModelNet40 only.
    *(Claim(f"c · {column}", "a learnable, non-shared T initialised by the default T beats the default T",
            "table7", Direction.A_ABOVE_B,
            "Section 4.8: 'learnable filter transformation does perform better than handcrafted design'",
            {SMALL: Comparison(TABLE7_A, TABLE7_B, column), **paper})
      for column, paper in (("ModelNet40", {PAPER: Comparison(TABLE7_PAPER_A, TABLE7_B, "ModelNet40")}),
                            ("SemanticKITTI", {}))),
    Claim("d", "with the least training data, the image-pretrained network beats training from scratch", "table3",
          Direction.A_ABOVE_B,
          "Section 4.3: 'Especially for the most difficult setting with 1% training data, the performance is "
          "improved by 11.26% accuracy'",
          {SMALL: Comparison("image-pretrained, I,O,µ,σ,W,b", "from scratch", "1 / class"),
           PAPER: Comparison("w/ pretraining", "w/o pretraining", "1 %")}),
    # The paper's FractalDB-1K column: I,O,µ,σ 72.53 against I,O 85.54; small scale: the 10-category FractalDB.
    Claim("Table 4 · FractalDB, µ,σ", "on the FractalDB-pretrained backbone, updating µ,σ as well falls below I,O "
          "alone", "table4", Direction.A_BELOW_B,
          "Section 4.5: 'updating the mean and variance harms the transfer performance significantly by up to 13 %'",
          {SMALL: Comparison("FractalDB", "FractalDB", "ModelNet40 · I,O,µ,σ", "ModelNet40 · I,O"),
           PAPER: Comparison("I,O,µ,σ", "I,O", "FractalDB-1K")}),
    Claim("Table 6 · deeper, I,O", "with only I,O trained, the middle depth beats the shallowest", "table6",
          Direction.A_ABOVE_B, "Section 4.7: 'can be improved by 4.78% as the backbone is scaled from ResNet-18 into "
          "ResNet-50'", _across_depths("I,O", "I,O", 1, 0)),
    Claim("Table 6 · deepest, I,O", "with only I,O trained, the deepest backbone falls below the middle one",
          "table6", Direction.A_BELOW_B,
          "Section 4.7: 'using ResNet-152 lead to a noticeable performance drop by 14.14%'",
          _across_depths("I,O", "I,O", 2, 1)),
    Claim("Table 6 · deepest, µ,σ", "on the deepest backbone, updating µ,σ as well beats I,O alone", "table6",
          Direction.A_ABOVE_B, "Section 4.7: 'This issue can be alleviated by updating the BN mean and variance'",
          _across_depths("I,O,µ,σ", "I,O", 2)),
    *(Claim(f"Table 2 · {label}", f"image pretraining helps {label} (whole network finetuned)", "table2",
            Direction.A_ABOVE_B,
            "Section 4.2: 'image pretraining is also effective for point-based model and projection-based model'",
            {SMALL: Comparison("image-pretrained", "from scratch", small),
             PAPER: Comparison("whole network", "from scratch", paper)})
      for label, small, paper in (
          ("PointNet++", "PointNet++ · ModelNet40", "Tiny-ImageNet → ModelNet40 · PointNet++"),
          ("HRNet", "HRNet-W18 range images · SemanticKITTI", "Cityscapes → SemanticKITTI · HRNetV2-W48"))),
    Claim(TABLE2_ESPNET_CLAIM, "image pretraining helps HRNet (whole network finetuned); here a real released "
          "Cityscapes network, ESPNet-C, in HRNet's place, against the same network from scratch", "table2",
          Direction.A_ABOVE_B,
          "Section 4.2: 'image pretraining is also effective for point-based model and projection-based model'",
          {SMALL: Comparison("image-pretrained", "from scratch", "ESPNet-C range images · SemanticKITTI")}),
)


def select_claims(selectors: Sequence[str]) -> tuple[Claim, ...]:
    """The claims a selector names, in the paper's order: a selector is a claim's name or the part of it before a
    ' · ' (``b`` is every claim (b), ``b · ModelNet40`` that one), any case; none: every claim."""
    if not selectors:
        return CLAIMS
    chosen = []
    for selector in selectors:
        wanted = selector.strip().casefold()
        matched = [claim for claim in CLAIMS
                   if claim.name.casefold() == wanted or claim.name.casefold().startswith(f"{wanted} · ")]
        if not matched:
            names = "; ".join(claim.name for claim in CLAIMS)
            raise ConfigError(f"--claim {selector!r}: no such claim (claims: {names})")
        chosen += matched
    return tuple(claim for claim in CLAIMS if claim in chosen)


@dataclass(frozen=True)
class ClaimResult:
    """A claim's verdict at one scale, or why there is none (``missing``: run ids without outcomes)."""

    claim: Claim
    comparison: Comparison | None
    measure: str | None
    result: PairedDifference | None
    verdict: Verdict | None
    seeds: tuple[int, ...]
    units: str | None
    missing: tuple[str, ...] = ()
    reason: str | None = None
    # The same difference with the test units resampled but the seeds not: what the test set alone says.
    fixed_seeds: PairedDifference | None = None


def unit_outcomes(outcomes: Outcomes) -> tuple[dict[object, np.ndarray], int]:
    """Additive per-unit outcomes (see :mod:`image2point.experiments.paired`) and their width."""
    if isinstance(outcomes, ClassificationOutcomes):
        correct = outcomes.correct.astype(np.float64)
        return {name: np.array([hit, 1.0]) for name, hit in zip(outcomes.sample_ids, correct, strict=True)}, 2
    classes = outcomes.num_classes
    units: dict[object, np.ndarray] = {}
    for key, row in zip(outcomes.unit_keys(), outcomes.cells, strict=True):
        confusion = units.setdefault(key, np.zeros(classes * classes))
        confusion[row[TARGET] * classes + row[PREDICTION]] += row[COUNT]
    return units, classes * classes


def describe_units(outcomes: Outcomes) -> str:
    if isinstance(outcomes, ClassificationOutcomes):
        return "shapes"
    return "scans" if outcomes.block_metres is None else f"{outcomes.block_metres:g} m blocks of scans"


def evaluate_claim(claim: Claim, context: ExperimentContext, seeds: Sequence[int],
                   replicates: int = DEFAULT_REPLICATES) -> ClaimResult:
    """The paired difference of a claim's two cells over the seeds whose runs have all finished."""
    comparison = claim.cells.get(context.scale)
    if comparison is None:
        return ClaimResult(claim, None, None, None, None, (), None, reason=f"no cells at scale {context.scale}")
    measure = Measure(get_table(claim.table).layout(context.scale).metrics[comparison.column])
    cells = _claim_cells(claim.table, comparison, context, seeds)
    absent = next(((row, column) for (row, column), runs in zip((comparison.cell_a, comparison.cell_b), cells,
                                                                strict=True) if not runs), None)
    if absent is not None:
        return ClaimResult(claim, comparison, measure.value, None, None, (), None,
                           reason=f"{claim.table} has no runs for row {absent[0]!r} in {absent[1]!r}")
    unavailable = next((p for runs in cells for p in runs if p.status in UNAVAILABLE), None)
    if unavailable is not None:
        return ClaimResult(claim, comparison, measure.value, None, None, (), None,
                           reason=f"{unavailable.status}: {unavailable.reason}")
    loaded, missing = _load_outcomes([p for runs in cells for p in runs])
    complete = [seed for seed in seeds
                if all(p.run_dir in loaded for runs in cells for p in runs if p.spec.seed == seed)]
    if not complete:
        return ClaimResult(claim, comparison, measure.value, None, None, (), None, missing)
    folds = sorted({p.fold for runs in cells for p in runs}, key=lambda fold: -1 if fold is None else fold)
    paired = []
    for fold in folds:
        per_row = [[unit_outcomes(loaded[_run(runs, seed, fold).run_dir])[0] for seed in complete] for runs in cells]
        sample = loaded[_run(cells[0], complete[0], fold).run_dir]
        paired.append(pair_units(per_row[0], per_row[1], unit_outcomes(sample)[1]))
    result = paired_difference(paired, measure, replicates, BOOTSTRAP_SEED)
    fixed = paired_difference(paired, measure, replicates, BOOTSTRAP_SEED, resample_seeds=False)
    return ClaimResult(claim, comparison, measure.value, result, result.verdict(claim.direction), tuple(complete),
                       describe_units(sample), missing, fixed_seeds=fixed)


def _claim_cells(table_name: str, comparison: Comparison, context: ExperimentContext,
                 seeds: Sequence[int]) -> tuple[list[PlannedRun], list[PlannedRun]]:
    """The planned runs of cell A and of cell B (each empty when the table has no such cell)."""
    table = get_table(table_name)
    layout = table.layout(context.scale)
    plans = plan_table(table, context, seeds)
    # A cell may show another cell's runs (a from-scratch row shared by every column).
    shown = [layout.runs_cell(*cell) for cell in (comparison.cell_a, comparison.cell_b)]
    return tuple([p for p in plans if (p.spec.row, p.spec.column) == cell] for cell in shown)


def claim_plans(context: ExperimentContext, seeds: Sequence[int],
                claims: Sequence[Claim] = CLAIMS) -> dict[str, list[PlannedRun]]:
    """Table name -> the runs the claims at this scale need from it, each once, in the claims' order: what
    ``image2point experiment claims`` trains before it judges (a cell's runs, not the whole table's)."""
    needed: dict[str, dict[Path, PlannedRun]] = {}
    for claim in claims:
        comparison = claim.cells.get(context.scale)
        if comparison is None:
            continue
        for runs in _claim_cells(claim.table, comparison, context, seeds):
            table_runs = needed.setdefault(claim.table, {})
            for planned in runs:
                table_runs.setdefault(planned.run_dir, planned)
    return {table: list(runs.values()) for table, runs in needed.items()}


def _run(runs: Sequence[PlannedRun], seed: int, fold: int | None) -> PlannedRun:
    return next(p for p in runs if p.spec.seed == seed and p.fold == fold)


def _load_outcomes(plans: Sequence[PlannedRun]) -> tuple[dict[Path, Outcomes], tuple[str, ...]]:
    loaded, missing = {}, []
    for planned in plans:
        path = planned.run_dir / OUTCOMES_FILE
        if path.is_file() and (planned.run_dir / "metrics.json").is_file():
            loaded[planned.run_dir] = read_outcomes(path)
        else:
            missing.append(planned.spec.run_id)
    return loaded, tuple(missing)


def render_claims(results: Sequence[ClaimResult], command: str) -> str:
    """claims.md: one row per claim."""
    lines = ["# The paper's claims at this scale", "", f"- command: `{command}`",
             "- difference: A - B in percentage points, mean over seeds of the metric pooled over folds; 95 % "
             "interval: bootstrap over test units within folds (shared by both rows) and over seeds; the last "
             "column resamples the test units only",
             "", "| claim | table | A | B | column | difference | 95 % interval | verdict | seeds | units | "
             "interval, seeds fixed |", "|---|---|---|---|---|---:|---|---|---|---|---|"]
    for item in results:
        cells = item.comparison or Comparison("", "", "")
        if item.result is None:
            verdict, difference, interval, fixed = f"no verdict ({_why_none(item)})", "", "", ""
        else:
            verdict = item.verdict.value
            difference = f"{item.result.difference:+.2f}"
            interval = f"[{item.result.low:+.2f}, {item.result.high:+.2f}]"
            fixed = (f"[{item.fixed_seeds.low:+.2f}, {item.fixed_seeds.high:+.2f}]: "
                     f"{item.fixed_seeds.verdict(item.claim.direction).value}")
        lines.append(f"| {item.claim.name} | {item.claim.table} | {cells.row_a} | {cells.describe_b()} | "
                     f"{cells.column} | "
                     f"{difference} | {interval} | {verdict} | {','.join(map(str, item.seeds))} | {item.units or ''} | "
                     f"{fixed} |")
    lines += ["", "Claims:", ""]
    lines += [f"- {item.claim.name}: {item.claim.statement} ({item.claim.reference})." for item in results]
    return "\n".join(lines) + "\n"


def _why_none(item: ClaimResult) -> str:
    if item.reason is not None:
        return item.reason
    shown = ", ".join(item.missing[:MISSING_SHOWN]) + (", ..." if len(item.missing) > MISSING_SHOWN else "")
    return f"{len(item.missing)} runs not finished: {shown}; image2point experiment claims trains them"


def _fixed_seeds_entry(item: ClaimResult) -> dict:
    fixed = item.fixed_seeds
    if fixed is None:
        return {"interval_seeds_fixed": None, "verdict_seeds_fixed": None}
    return {"interval_seeds_fixed": [fixed.low, fixed.high],
            "verdict_seeds_fixed": fixed.verdict(item.claim.direction).value}


def claims_payload(results: Sequence[ClaimResult], command: str) -> dict:
    entries = []
    for item in results:
        entries.append({
            "claim": item.claim.name, "statement": item.claim.statement, "table": item.claim.table,
            "reference": item.claim.reference, "expected": item.claim.direction.name.lower(),
            "comparison": None if item.comparison is None else asdict(item.comparison), "metric": item.measure,
            "difference": None if item.result is None else item.result.difference,
            "interval": None if item.result is None else [item.result.low, item.result.high],
            "per_seed": None if item.result is None else list(item.result.per_seed),
            "replicates": None if item.result is None else item.result.replicates,
            "verdict": None if item.verdict is None else item.verdict.value, "seeds": list(item.seeds),
            **_fixed_seeds_entry(item),
            "units": item.units, "unit_count": None if item.result is None else item.result.units,
            "missing_runs": list(item.missing), "reason": item.reason,
        })
    return {"command": command, "claims": entries}


def write_claims(context: ExperimentContext, seeds: Sequence[int], command: str,
                 echo: Callable[[str], None] = print, write: bool = True,
                 replicates: int = DEFAULT_REPLICATES) -> list[Path]:
    """Evaluate every claim on the runs under ``context.out_dir``, print one line each, and (``write``) write
    claims.md and claims.json there."""
    results = [evaluate_claim(claim, context, seeds, replicates) for claim in CLAIMS]
    contents = {CLAIMS_MD: render_claims(results, command),
                CLAIMS_JSON: json.dumps(claims_payload(results, command), indent=2, ensure_ascii=False) + "\n"}
    for item in results:
        if item.result is None:
            echo(f"{item.claim.name}: no verdict ({_why_none(item)})")
        else:
            echo(f"{item.claim.name}: {item.result.difference:+.2f} [{item.result.low:+.2f}, {item.result.high:+.2f}]"
                 f" -> {item.verdict.value}")
    if not write:
        return []
    context.out_dir.mkdir(parents=True, exist_ok=True)
    for name, text in contents.items():
        with atomic_write(context.out_dir / name, "w") as stream:
            stream.write(text)
        echo(f"wrote {context.out_dir / name}")
    return [context.out_dir / name for name in contents]
