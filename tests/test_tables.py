"""The listing commands fit in 100 columns (cells wrap; ``--wide`` keeps one line per row)."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner
from tfxai.cli.main import main
from tfxai.cli.tables import WIDTH, format_table, wrap_text

LONG = ("steps=50, baseline='black', method='riemann_right', internal_batch_size=64, "
        "variants=rotate_-30,rotate_-15,rotate_15,rotate_30,boost_chromaticity")


@pytest.mark.parametrize("width", [1, 7, 12, 20, 33, 200])
def test_wrap_keeps_every_character_and_the_width(width):
    lines = wrap_text(LONG, width)
    assert all(len(line) <= width for line in lines)
    assert "".join(lines).replace(" ", "") == LONG.replace(" ", "")
    if width >= len("internal_batch_size=64,"):  # items are never cut when they fit a line
        for item in re.split(r"[ ,]+", LONG):
            assert any(item in line for line in lines), item


def test_wrap_breaks_after_commas_and_keeps_newlines():
    assert wrap_text("rotate_-30,rotate_-15,rotate_15", 12) == ["rotate_-30,", "rotate_-15,",
                                                                 "rotate_15"]
    assert wrap_text("a b\ncd", 10) == ["a b", "cd"]


def test_table_fits_and_keeps_narrow_columns_whole():
    rows = [["saliency", LONG, "gradient of the logit [Simonyan 2014] " * 3],
            ["integrated_gradients+smoothgrad", "-", "x"]]
    text = format_table(rows, ["method", "parameters", "summary"], width=WIDTH)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= WIDTH
    assert any(line.startswith("integrated_gradients+smoothgrad  ") for line in lines)
    wide = format_table(rows, ["method", "parameters", "summary"], width=None)
    assert len(wide.splitlines()) == 4 and max(len(x) for x in wide.splitlines()) > WIDTH


def test_names_stay_whole_and_free_text_wraps():
    """Columns keep their longest item (a name) whole; the free-text columns give up width."""
    rows = [["relevance_rank_accuracy", "b lower\ns higher", "x " * 70, "y, " * 60],
            ["iou", "higher", "-", "-"]]
    text = format_table(rows, ["metric", "better", "variants", "parameters"], width=60)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 60
    assert lines[2].startswith("relevance_rank_accuracy  b lower   ")
    assert lines[3].startswith(" " * 25 + "s higher  ")
    assert any(line.startswith("iou ") for line in lines)


def test_an_item_longer_than_its_column_is_cut_after_punctuation():
    assert wrap_text("map_absolute=None,", 14) == ["map_absolute=", "None,"]
    assert wrap_text("abcdefghijk", 4) == ["abcd", "efgh", "ijk"]


@pytest.mark.parametrize("command", ["models", "methods", "metrics"])
def test_listing_commands_fit_in_100_columns(command):
    res = CliRunner().invoke(main, [command])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    too_long = [line for line in lines if len(line) > WIDTH]
    assert not too_long, too_long
    assert len(lines) > 8


def test_methods_list_every_method_and_wide_is_one_line_per_row():
    from tfxai.attribution.registry import method_info

    names = [r["name"] for r in method_info()]
    wrapped = CliRunner().invoke(main, ["methods"]).output
    wide = CliRunner().invoke(main, ["methods", "--wide"]).output
    starts = {line.split("  ")[0] for line in wrapped.splitlines()}
    assert set(names) <= starts
    rows = [line for line in wide.splitlines() if line.split("  ")[0] in names]
    assert len(rows) == len(names)
    assert max(len(line) for line in wide.splitlines()) > WIDTH  # the long rows, unwrapped
    # wrapping moves text, it drops none
    squash = lambda text: re.sub(r"[\s-]+", "", text)  # noqa: E731
    assert sorted(squash(wrapped)) == sorted(squash(wide))
