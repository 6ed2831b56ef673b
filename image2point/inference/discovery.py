"""Which files to predict and where their ground truth is: inputs named by files, directories and glob
patterns (:func:`image2point.io.iter_input_paths`), each paired with its labels file when one is given."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from image2point.errors import DataError
from image2point.io import iter_input_paths
from image2point.io.readers import LABEL_EXTENSIONS


@dataclasses.dataclass(frozen=True)
class InputFile:
    """One cloud to predict and the file holding its ground truth (None: none, or a labels field in the cloud)."""

    path: Path
    labels: Path | None = None


def discover_inputs(inputs: Sequence[str | Path], labels: str | Path | None = None) -> tuple[InputFile, ...]:
    """The clouds ``inputs`` name, in order, each with its labels file.

    labels: a file (one input only) or a directory holding ``<name>.label`` / ``.npy`` / ``.txt`` /
    ``.labels`` for every input. DataError when two inputs would write the same outputs (one name)
    or an input has no labels in the directory.
    """
    paths = iter_input_paths(inputs)
    _check_unique_names(paths)
    label_paths = _label_paths(paths, labels)
    return tuple(InputFile(path, label_paths[path]) for path in paths)


def _check_unique_names(paths: Sequence[Path]) -> None:
    seen: dict[str, Path] = {}
    for path in paths:
        if path.stem in seen:
            raise DataError(f"inputs {seen[path.stem]} and {path} would write the same outputs ({path.stem}.*); "
                            "predict them into different output directories")
        seen[path.stem] = path


def _label_paths(paths: Sequence[Path], labels: str | Path | None) -> dict[Path, Path | None]:
    if labels is None:
        return {path: None for path in paths}
    labels = Path(labels)
    if labels.is_dir():
        found = {}
        for path in paths:
            candidates = [labels / f"{path.stem}{suffix}" for suffix in LABEL_EXTENSIONS]
            match = next((candidate for candidate in candidates if candidate.is_file()), None)
            if match is None:
                raise DataError(f"no labels for {path.name} (looked for {path.stem} with "
                                f"{', '.join(LABEL_EXTENSIONS)})", labels)
            found[path] = match
        return found
    if not labels.is_file():
        raise DataError("no such labels file or directory", labels)
    if len(paths) != 1:
        raise DataError(f"one labels file for {len(paths)} inputs; give a directory of <name>.label files", labels)
    return {paths[0]: labels}
