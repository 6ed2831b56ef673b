"""The datasets' fixed-width text tables (ModelNet40 resampled files, S3DIS annotations)."""

import numpy as np
import pytest

from image2point.errors import DataError
from image2point.io.text import read_numeric_table


def test_read_numeric_table_parses_and_skips_blank_lines(tmp_path):
    path = tmp_path / "table.txt"
    path.write_text("1,2,3\n\n4,5,6\n")
    np.testing.assert_array_equal(read_numeric_table(path, 3, ","), [[1, 2, 3], [4, 5, 6]])


def test_read_numeric_table_accepts_whitespace_only_lines_via_the_line_parser(tmp_path):
    path = tmp_path / "table.txt"
    path.write_text("1,2,3\n   \n4,5,6\n")
    table = read_numeric_table(path, 3, ",")
    assert table.dtype == np.float32 and table.shape == (2, 3)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("1,2,3\n4,5\n", "line 2: expected 3 ','-separated values, found 2"),
        ("1,2,3\n\n1,x,3\n", "line 3: 'x' is not a number"),
        ("1,2,3\nnan,2,3\n", "line 2: 'nan' is not a finite"),
        ("1,2,3\n1,2,1e50\n", "line 2: '1e50' is not a finite"),
        ("", "empty"),
        ("\n\n", "empty"),
    ],
)
def test_read_numeric_table_names_the_bad_line(tmp_path, content, problem):
    path = tmp_path / "bad.txt"
    path.write_text(content)
    with pytest.raises(DataError, match=problem) as error:
        read_numeric_table(path, 3, ",")
    assert error.value.path == path


def test_read_numeric_table_reports_undecodable_bytes_and_missing_files(tmp_path):
    path = tmp_path / "binary.txt"
    path.write_bytes(b"1 2 3\n\xff\xfe 1 2\n")
    with pytest.raises(DataError, match="line 2: not UTF-8"):
        read_numeric_table(path, 3, None)
    with pytest.raises(DataError, match="cannot read"):
        read_numeric_table(tmp_path / "absent.txt", 3, None)
