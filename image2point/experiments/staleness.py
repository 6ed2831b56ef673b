"""Whether what a run directory or a source pretraining holds is what the plan now asks for.

A run is stale when its saved ``config.yaml`` differs from the plan's config in a setting (a recipe changed
since it ran: the small scale's length, say), when it trained from a source pretraining that is no longer the
one at the source's directory (``source.json`` records the checkpoint's SHA-256 before the run trains), or when
that pretraining is gone. A pretraining is finished only once it has recorded its settings
(``settings.json``, written last); one whose recorded settings differ from the source's is stale, and so is
every run planned on it. :mod:`image2point.experiments.plan` marks such runs; tables and claims leave them out
and the runner refuses to train while any is planned.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from image2point.errors import ConfigError
from image2point.train.config import RunConfig, config_to_dict, upgrade_stored_head
from image2point.train.resume import changed_keys
from image2point.train.stored import upgrade_stored_config
from image2point.train.yaml_io import flatten, read_config_file

if TYPE_CHECKING:
    from image2point.experiments.sources import Pretraining

SAVED_CONFIG = "config.yaml"
SETTINGS_FILE = "settings.json"
RUN_SOURCE_FILE = "source.json"
# Where a run's data lay on the machine that ran it, not what it trains.
LOCATION_KEYS = frozenset({"data.root"})
# A checkpoint path is a location too; whether the run starts from one is not (which pretraining: source.json).
PRETRAINED_KEY = "model.pretrained"
DIFFERENCES_SHOWN = 2
MOVE_RUN = "move it away or pass another --out-dir"
HASH_CHUNK = 1 << 20


def read_json_mapping(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; anything else is a ConfigError naming the file."""
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ConfigError(f"{path}: cannot read: {error}") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: expected a JSON object, found {type(loaded).__name__}")
    return loaded


@functools.lru_cache(maxsize=64)
def _digest(path: Path, modified_ns: int, size: int) -> str:
    del modified_ns, size  # the cache key: a rewritten file is hashed again
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def checkpoint_digest(path: Path) -> str:
    """The SHA-256 of a checkpoint file (cached per process while the file is unchanged)."""
    stat = path.stat()
    return _digest(path, stat.st_mtime_ns, stat.st_size)


def write_pretraining_settings(pretraining: Pretraining) -> None:
    """Record what the pretraining was made with; written last, it marks the pretraining finished."""
    from image2point.checkpoint import atomic_write

    with atomic_write(pretraining.run_dir / SETTINGS_FILE, "w") as stream:
        json.dump(dataclasses.asdict(pretraining.settings), stream, indent=2)


def pretraining_stale_reason(pretraining: Pretraining) -> str | None:
    """Why the finished pretraining in its directory is not this one: the settings it recorded differ."""
    if not pretraining.finished:
        return None
    recorded, planned = read_json_mapping(pretraining.run_dir / SETTINGS_FILE), dataclasses.asdict(pretraining.settings)
    differences = [f"{key}: {recorded[key]} -> {value}" for key, value in planned.items()
                   if key in recorded and recorded[key] != value]
    if not differences:
        return None
    return (f"its source pretraining {pretraining.run_dir} was made with other settings ({'; '.join(differences)}); "
            f"move it and the runs trained from it away, or pass another --out-dir")


def record_run_source(run_dir: Path, pretraining: Pretraining) -> None:
    """Before a run trains from a pretraining: which checkpoint it is (its SHA-256)."""
    from image2point.checkpoint import atomic_write

    run_dir.mkdir(parents=True, exist_ok=True)
    with atomic_write(run_dir / RUN_SOURCE_FILE, "w") as stream:
        json.dump({"pretraining": pretraining.name, "checkpoint_sha256": checkpoint_digest(pretraining.checkpoint)},
                  stream, indent=2)


def config_differences(saved: Mapping[str, Any], planned: RunConfig) -> list[str]:
    """``key: saved -> planned`` for each setting whose value differs, read as a resume reads a stored config
    (settings that do not change what a run computes aside, keys the saved config lacks not compared); data
    locations are not settings and ``model.pretrained`` counts only as given or not."""
    stored = dict(upgrade_stored_head(upgrade_stored_config(saved)))
    old, new = flatten(stored), flatten(config_to_dict(planned))
    keys = [key for key in changed_keys(stored, planned) if key not in LOCATION_KEYS]
    if PRETRAINED_KEY in keys and (old[PRETRAINED_KEY] is None) == (new[PRETRAINED_KEY] is None):
        keys.remove(PRETRAINED_KEY)
    return [f"{key}: {old[key]} -> {new[key]}" for key in keys]


def run_stale_reason(run_dir: Path, planned: RunConfig, pretraining: Pretraining | None) -> str | None:
    """Why the run that started in ``run_dir`` is not the planned one (None: it is, or it kept nothing to tell).
    The caller has checked that the run started (finished or resumable)."""
    saved_path = run_dir / SAVED_CONFIG
    if not saved_path.is_file():
        return None
    if pretraining is not None:
        if not pretraining.finished:
            return f"trained from a source pretraining no longer at {pretraining.run_dir}; {MOVE_RUN}"
        source_path = run_dir / RUN_SOURCE_FILE
        if source_path.is_file() and read_json_mapping(source_path).get("checkpoint_sha256") != \
                checkpoint_digest(pretraining.checkpoint):
            return f"trained from another pretraining than the one now at {pretraining.run_dir}; {MOVE_RUN}"
    try:
        differences = config_differences(read_config_file(saved_path), planned)
    except ConfigError as error:
        return f"its config cannot be compared ({error}); {MOVE_RUN}"
    if not differences:
        return None
    more = len(differences) - DIFFERENCES_SHOWN
    return (f"ran under another config ({'; '.join(differences[:DIFFERENCES_SHOWN])}"
            f"{f'; {more} more' if more > 0 else ''}); {MOVE_RUN}")
