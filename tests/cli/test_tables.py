"""triggerctl's tables: every value whole, whatever the width; names cannot style or forge them."""

from __future__ import annotations

import pytest

from triggerd.cli.common import MIN_WRAPPED, column_widths, print_table

RUN = "01M995ZGAJJC5AWJGE6PC215TJ"
PATH = "/beamline/data/2026/proposal-12345/sample_with_a_long_name/scan_000049/detector_master.h5"


def _table(capsys, monkeypatch, columns: str | None) -> list[str]:
    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    print_table(
        ["run", "rule", "fired", "trigger"],
        [[RUN, "detector", 49, PATH], [RUN[:-1] + "K", "[bold]x[/]", 51, "a\nb"]],
    )
    return capsys.readouterr().out.splitlines()


def test_piped_rows_stay_whole_on_one_line(capsys, monkeypatch):
    """`triggerctl rules | cat` once showed fired counts 4 and 5 where they were 49 and 51."""
    lines = _table(capsys, monkeypatch, None)
    assert len(lines) == 3, lines
    assert RUN in lines[1] and " 49 " in lines[1] and PATH in lines[1]
    # no markup, no newline
    assert " 51 " in lines[2] and "[bold]x[/]" in lines[2] and "a\\nb" in lines[2]


@pytest.mark.parametrize("width", ["60", "80", "120"])
def test_a_narrow_terminal_folds_the_path_and_cuts_nothing(capsys, monkeypatch, width):
    lines = _table(capsys, monkeypatch, width)
    assert all(len(line.rstrip()) <= int(width) for line in lines), lines
    # ids and numbers never fold
    assert any(RUN in line and " 49 " in line for line in lines), lines
    assert any(" 51 " in line for line in lines)
    start = 26 + 2 + 10 + 2 + 5 + 2  # where the trigger column begins
    second = next(i for i, line in enumerate(lines) if " 51 " in line)
    folded = "".join(line[start:].rstrip() for line in lines[1:second])
    assert folded == PATH


def test_a_terminal_too_narrow_for_the_ids_gets_a_wider_table_not_a_cut_one(capsys, monkeypatch):
    lines = _table(capsys, monkeypatch, "30")
    assert any(RUN in line and " 49 " in line for line in lines), lines


def test_column_widths():
    natural, wraps = [26, 9, 5, 80], [False, False, False, True]
    assert column_widths(natural, wraps, None) == natural  # piped: as wide as it takes
    assert column_widths(natural, wraps, 200) == natural
    assert column_widths(natural, wraps, 80) == [26, 9, 5, 80 - 26 - 9 - 5 - 6]
    # wider than 40: nothing cut
    assert column_widths(natural, wraps, 40) == [26, 9, 5, MIN_WRAPPED]
    # two that wrap share the room; the narrower keeps its width when it fits
    assert column_widths([10, 8, 60], [False, True, True], 50) == [10, 8, 28]
