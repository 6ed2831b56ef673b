"""The command line's one error contract, the same for every command.

Bad input of any kind (a file, an option, a config key) ends with one line on stderr, ``image2point
COMMAND: error: ...``, naming the file or key and the problem, and exit status 2; commands validate before
they write, so nothing is written. A fault of the machine (a full disk, an unwritable directory, out of
memory) ends with one such line and exit status 1; outputs are staged and renamed only when complete, so
none is left half-written. A bug ends the same way, pointing to ``--debug`` for the traceback. No line
names an exception class, and none is longer than ``MAX_ERROR_CHARS``. Warnings of the dependencies are
hidden (``--debug`` shows them); image2point's own (:class:`Image2PointWarning`) are one line each.
"""

from __future__ import annotations

import argparse
import math
import sys
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import NoReturn

from image2point.errors import Image2PointError, Image2PointWarning, RuntimeFault

EXIT_BAD_INPUT = 2
EXIT_RUNTIME_FAULT = 1
EXIT_INTERRUPTED = 130
# Longest error line printed; the rest is counted, not shown (a YAML alias bomb can quote megabytes).
MAX_ERROR_CHARS = 500
# How torch reports an allocation that failed (CPU and CUDA).
OUT_OF_MEMORY_TEXT = "out of memory"
# OS errors that say a path the user gave is wrong rather than that the machine failed.
PATH_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError, FileExistsError)


class OneLineParser(argparse.ArgumentParser):
    """Usage errors as the one line every other error is (the usage itself stays in --help)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {one_line(message)}\n")


def parse_command_line(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """``parser``'s arguments; words it does not know are a usage error naming the command they were given to."""
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        parser.exit(EXIT_BAD_INPUT, f"image2point {args.command}: error: unrecognized arguments: "
                                    f"{one_line(' '.join(unknown))}\n")
    return args


def one_line(message: object) -> str:
    """``message`` on one line, at most ``MAX_ERROR_CHARS`` long."""
    text = " ".join(str(message).split())
    if len(text) > MAX_ERROR_CHARS:
        text = f"{text[:MAX_ERROR_CHARS]} ... ({len(text) - MAX_ERROR_CHARS} more characters)"
    return text


def run_command(command: str, handler: Callable[[], None], debug: bool) -> int:
    """Run ``handler`` under the contract; the exit status (``debug``: exceptions and warnings as Python has them)."""
    with warnings.catch_warnings():
        if not debug:
            # Dependencies' warnings (DataLoader worker counts, scheduler order under a skipped AMP step)
            # are not the user's to act on; image2point's own are, and are shown as one line each.
            warnings.simplefilter("ignore")
            warnings.simplefilter("default", Image2PointWarning)
            warnings.showwarning = _one_line_warning(command)
        try:
            handler()
        except KeyboardInterrupt:
            print(f"image2point {command}: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        except Exception as error:  # every error ends as the contract's one line
            if debug:
                raise
            status, message = exit_status_and_message(error)
            print(f"image2point {command}: error: {one_line(message)}", file=sys.stderr)
            return status
    return 0


def exit_status_and_message(error: Exception) -> tuple[int, str]:
    """Bad input -> 2; a fault of the machine -> 1; a bug -> 1, with a pointer to --debug."""
    if isinstance(error, (Image2PointError, FloatingPointError, ImportError)):
        return EXIT_BAD_INPUT, str(error)
    if isinstance(error, PATH_ERRORS):
        return EXIT_BAD_INPUT, describe_os_error(error)
    if isinstance(error, RuntimeFault):
        return EXIT_RUNTIME_FAULT, str(error)
    if isinstance(error, OSError):
        return EXIT_RUNTIME_FAULT, describe_os_error(error)
    if isinstance(error, MemoryError) or (isinstance(error, RuntimeError) and OUT_OF_MEMORY_TEXT in str(error)):
        return EXIT_RUNTIME_FAULT, f"out of memory ({one_line(error) or 'no details'})"
    return EXIT_RUNTIME_FAULT, f"internal error, please report it (rerun with --debug for the traceback): {error}"


def describe_os_error(error: OSError) -> str:
    """'path: reason', without Python's '[Errno N]' prefix or the exception's class."""
    reason = error.strerror or str(error) or "input/output error"
    return ": ".join([*(str(name) for name in (error.filename, error.filename2) if name is not None), reason])


def _one_line_warning(command: str):
    def show(message, category, filename, lineno, file=None, line=None) -> None:
        print(f"image2point {command}: warning: {one_line(message)}", file=sys.stderr)

    return show


def refuse_existing(paths: Iterable[Path]) -> None:
    """Image2PointError for the first of ``paths`` that exists (a command that would replace it without --force)."""
    for path in paths:
        if path.exists():
            raise Image2PointError(f"{path}: exists; pass --force to replace it")


def seed(text: str) -> int:
    """argparse type: a seed every generator takes (the range a run config's seeds have)."""
    from image2point.train.config import MAX_SEED

    value = int(text)
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"seed must be in [0, {MAX_SEED}], got {value}")
    return value


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_finite(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text}")
    return value


def field_names(text: str | None) -> list[str] | None:
    """``--fields x,y,z,intensity`` as names (None: the reader's default)."""
    if text is None:
        return None
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise Image2PointError(f"--fields {text!r}: expected comma-separated names such as x,y,z,intensity")
    return names


def require_positive(option: str, value: float) -> None:
    if value <= 0:
        raise Image2PointError(f"{option} must be positive, got {value}")
