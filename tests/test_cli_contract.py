"""The error contract's classification: bad input exits 2, a fault of the machine or a bug exits 1, in one
line without an exception class, capped in length."""

import errno

import pytest

from image2point.cli_contract import (
    EXIT_BAD_INPUT,
    EXIT_INTERRUPTED,
    EXIT_RUNTIME_FAULT,
    MAX_ERROR_CHARS,
    one_line,
    run_command,
)
from image2point.errors import ConfigError, DataError, RuntimeFault


def _raises(error: BaseException):
    def handler() -> None:
        raise error

    return handler


@pytest.mark.parametrize("error,status,line", [
    (DataError("empty file (0 bytes)", "a.ply"), EXIT_BAD_INPUT, "a.ply: empty file (0 bytes)"),
    (ConfigError("x.yaml: unknown key 'optim.lrr'"), EXIT_BAD_INPUT, "x.yaml: unknown key 'optim.lrr'"),
    (FileNotFoundError(errno.ENOENT, "No such file or directory", "in.ply"), EXIT_BAD_INPUT,
     "in.ply: No such file or directory"),
    (OSError(errno.ENOSPC, "No space left on device", "run/last.pt"), EXIT_RUNTIME_FAULT,
     "run/last.pt: No space left on device"),
    (PermissionError(errno.EACCES, "Permission denied", "run"), EXIT_RUNTIME_FAULT, "run: Permission denied"),
    (RuntimeFault("run/best.pt: cannot write checkpoint: File too large"), EXIT_RUNTIME_FAULT,
     "run/best.pt: cannot write checkpoint: File too large"),
    (MemoryError(), EXIT_RUNTIME_FAULT, "out of memory (no details)"),
    (RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"), EXIT_RUNTIME_FAULT,
     "out of memory (CUDA out of memory. Tried to allocate 2.00 GiB)"),
    (ZeroDivisionError("division by zero"), EXIT_RUNTIME_FAULT,
     "internal error, please report it (rerun with --debug for the traceback): division by zero"),
])
def test_each_kind_of_error_gets_its_status_and_one_line(error, status, line, capsys):
    assert run_command("predict", _raises(error), debug=False) == status
    assert capsys.readouterr().err == f"image2point predict: error: {line}\n"


def test_an_interrupt_exits_130_in_one_line(capsys):
    assert run_command("train", _raises(KeyboardInterrupt()), debug=False) == EXIT_INTERRUPTED
    assert capsys.readouterr().err == "image2point train: interrupted\n"


def test_debug_lets_the_exception_through():
    with pytest.raises(ZeroDivisionError):
        run_command("train", _raises(ZeroDivisionError("x")), debug=True)


def test_a_long_or_multi_line_message_becomes_one_capped_line():
    line = one_line("first\nsecond\t" + "x" * 10_000)
    assert "\n" not in line and line.startswith("first second x")
    assert len(line) <= MAX_ERROR_CHARS + 40 and line.endswith(f"({10_000 + len('first second ') - MAX_ERROR_CHARS} more characters)")
