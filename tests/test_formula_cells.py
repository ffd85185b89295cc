"""CSV cells a spreadsheet would run as a formula get a leading `'` in `labels export` and
`responses export --format csv`, and `labels import` takes exactly that `'` off again.

What counts as a formula comes from outside the code: OWASP's "CSV Injection" page lists the
first characters `=`, `+`, `-`, `@`, tab (0x09), carriage return (0x0D) and line feed (0x0A);
OWASP ASVS 4.0 requirement 5.3.3 / ASVS 5 1.2.10 adds NUL (0x00). Spreadsheets skip leading
spaces before a formula (` =1+1` is still one), so such a character after spaces, other
blanks or control characters counts too. Each expected cell below is written out by hand.
"""

from __future__ import annotations

import csv
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.annotate.conftest import make_run
from tests.annotate.test_labels_csv import T0, stored, vlmalign
from vlmalign.labels import neutralise_cell, restore_cell
from vlmalign.store import LabelRow, RunStore

# (cell as stored, cell as exported)
NEUTRALISED = [
    ('\n=HYPERLINK("http://x")', '\'\n=HYPERLINK("http://x")'),  # LF first (OWASP)
    ("\n", "'\n"),  # a lone LF
    ("\0=1+1", "'\0=1+1"),  # NUL first (ASVS)
    ("\0", "'\0"),
    (" =1+1", "' =1+1"),  # a space, then a formula
    ("   @SUM(A1:A9)", "'   @SUM(A1:A9)"),
    ("\r\n+1", "'\r\n+1"),  # CR first (OWASP), then more
    ("\t-1", "'\t-1"),  # tab first (OWASP)
    ("\u00a0=1", "'\u00a0=1"),  # no-break space, then a formula
    ("\u3000=1", "'\u3000=1"),  # ideographic space
    ("\u200b-2", "'\u200b-2"),  # zero-width space (a format character)
    ("\ufeff=1", "'\ufeff=1"),  # a byte-order mark
    ("\x0b@x", "'\x0b@x"),  # vertical tab
    ("\x1f+x", "'\x1f+x"),  # a control character
    ("\x85=1", "'\x85=1"),  # next line (C1)
    ("' =1", "'' =1"),  # an exported cell's `'` already there: one more, so import is exact
    ("=1", "'=1"),  # and the plain cases, as before
    ("@me", "'@me"),
]
KEPT = [" hello", "plain\ntext", "a=b", "'quoted", " 'x=1", "\u00a0text", "", "1-2"]

OWASP_FIRST = ("=", "+", "-", "@", "\t", "\r", "\n", "\0")


def runs_as_formula(cell: str) -> bool:
    """The test's own reading of the guidance: an OWASP/ASVS first character, or one after
    leading blanks (Unicode spaces, control and format characters)."""
    if cell.startswith(OWASP_FIRST):
        return True
    rest = cell
    while rest and (rest[0].isspace() or unicodedata.category(rest[0]) in ("Cc", "Cf")):
        rest = rest[1:]
    return rest != cell and rest.startswith(OWASP_FIRST)


@pytest.mark.parametrize(("cell", "exported"), NEUTRALISED, ids=[ascii(c) for c, _ in NEUTRALISED])
def test_each_formula_start_is_neutralised(cell: str, exported: str) -> None:
    assert neutralise_cell(cell) == exported
    assert restore_cell(exported) == cell


@pytest.mark.parametrize("cell", KEPT, ids=[ascii(c) for c in KEPT])
def test_other_cells_are_kept(cell: str) -> None:
    assert neutralise_cell(cell) == cell
    assert restore_cell(cell) == cell


BLANKS = st.sampled_from(list(" \t\r\n\0\x0b\x0c\x1f\x85\u00a0\u2028\u200b\ufeff\u3000'"))


@settings(max_examples=300, deadline=None, database=None)
@given(st.lists(BLANKS, max_size=4).map("".join), st.text(max_size=12))
def test_no_exported_cell_runs_and_every_cell_comes_back(lead: str, text: str) -> None:
    cell = lead + text
    exported = neutralise_cell(cell)
    assert not runs_as_formula(exported)
    assert restore_cell(exported) == cell


def test_labels_export_and_import_through_the_cli(tmp_path: Path) -> None:
    run = tmp_path / "run"
    keys = make_run(run, ["Yes, you should help her."])
    notes = [cell for cell, _ in NEUTRALISED] + KEPT
    with RunStore(run) as store:
        store.add_labels([LabelRow(keys[0], "ana", "aligned", note, T0) for note in notes])
        store.add_labels([LabelRow(keys[0], " =cmd|' /C calc'!A0", "unsure", "", T0)])
    exported = tmp_path / "labels.csv"
    result = vlmalign("labels", "export", str(run), "--all-revisions", "--output", str(exported))
    assert result.returncode == 0, result.stderr
    with exported.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["note"] for r in rows[: len(notes)]] == [e for _, e in NEUTRALISED] + KEPT
    assert rows[-1]["annotator"] == "' =cmd|' /C calc'!A0"
    for row in rows:
        assert not any(runs_as_formula(cell) for cell in row.values()), row

    fresh = tmp_path / "fresh"
    make_run(fresh, ["Yes, you should help her."])
    imported = vlmalign("labels", "import", str(fresh), str(exported))
    assert imported.returncode == 0, imported.stderr
    # notes come back exactly; names lose the spaces around them, as import always did
    assert [row[3] for row in stored(fresh)][: len(notes)] == notes
    assert stored(fresh)[-1][1] == "=cmd|' /C calc'!A0"


def test_responses_export_csv_neutralises_the_same_cells(tmp_path: Path) -> None:
    responses = ["\n=1+1", "\0@x", " -2", "\u200b+3", "Yes, help her."]
    run = tmp_path / "run"
    make_run(run, responses)
    output = tmp_path / "responses.csv"
    result = vlmalign("responses", "export", str(run), "--format", "csv", "--output", str(output))
    assert result.returncode == 0, result.stderr
    with output.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["response"] for r in rows] == ["'\n=1+1", "'\0@x", "' -2", "'\u200b+3", responses[4]]
    for row in rows:
        assert not any(runs_as_formula(cell) for cell in row.values()), row
