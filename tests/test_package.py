"""The package root: its public names, imported on first use, so that ``import image2point`` and the
command line's help load no torch (checked in a fresh interpreter)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import image2point

REPOSITORY = Path(__file__).resolve().parents[1]
PUBLIC_NAMES = ("SparseTensor", "collate_voxels", "convert_2d_to_3d", "filter_transform", "inflate_weight",
                "voxelize")
HEAVY_MODULES = ("torch", "numpy", "yaml")
# Runs argv through the command line in a fresh interpreter, then prints which heavy modules got loaded.
PROBE = """
import json, sys
import image2point, image2point.cli
try:
    image2point.cli.main(json.loads(sys.argv[1]))
except SystemExit:
    pass
print(json.dumps(sorted(name for name in {heavy!r} if name in sys.modules)), file=sys.stderr)
"""


def loaded_heavy_modules(argv: list[str]) -> list[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPOSITORY), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY_MODULES), json.dumps(argv)],
                          capture_output=True, text=True, env=env, cwd=REPOSITORY, check=True, timeout=120)
    return json.loads(done.stderr.strip().splitlines()[-1])


@pytest.mark.parametrize("argv", [[], ["--help"], ["train", "--help"], ["predict", "--help"], ["inflate", "--help"],
                                  ["experiment", "--help"]])
def test_import_and_help_load_no_torch(argv):
    assert loaded_heavy_modules(argv) == []


def test_public_names_are_there_and_are_what_they_name():
    from image2point.inflate.converter import convert_2d_to_3d
    from image2point.inflate.transforms import filter_transform, inflate_weight
    from image2point.sparse.tensor import SparseTensor
    from image2point.voxelize import collate_voxels, voxelize

    assert sorted(image2point.__all__) == sorted(PUBLIC_NAMES)
    assert set(PUBLIC_NAMES) <= set(dir(image2point))
    expected = (SparseTensor, collate_voxels, convert_2d_to_3d, filter_transform, inflate_weight, voxelize)
    assert tuple(getattr(image2point, name) for name in PUBLIC_NAMES) == expected
    # The submodule image2point.voxelize is imported by now; the package still names the function.
    assert image2point.voxelize is voxelize
    assert image2point.__version__


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no_such_name"):
        image2point.no_such_name  # noqa: B018
    with pytest.raises(ImportError):
        from image2point import no_such_name  # noqa: F401
