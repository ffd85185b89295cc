"""The label CSV round trip through the real `vlmalign labels` CLI: regressions and hostile files.

Expected values come from outside the code under test: Python's `csv` module reads what export
wrote, OWASP's rule for CSV injection (a cell starting `=`, `+`, `-`, `@`, tab or CR gets a
leading `'`) gives the neutralised cells by hand, and markdown-it-py (CommonMark + GFM tables)
renders report.md the way a Markdown viewer would.
"""

from __future__ import annotations

import csv
import html
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from vlmalign.cli import main
from vlmalign.hashing import stable_hash
from vlmalign.labels import MAX_NOTE, export_csv, import_csv, validate_annotator
from vlmalign.report.analysis import analyse
from vlmalign.report.html import render_html
from vlmalign.report.markdown import render_markdown
from vlmalign.report.run_data import load_run
from vlmalign.store import LABELS, JudgmentRow, LabelRow, RunStore

from .conftest import make_run

T0 = "2026-01-01T00:00:00+00:00"
HEADER = "generation_key,annotator,label,note,created_at\n"


def vlmalign(*args: str) -> subprocess.CompletedProcess[str]:
    """The installed command in its own process (its real entry point and exit code)."""
    return subprocess.run(
        [sys.executable, "-m", "vlmalign", *args], capture_output=True, text=True, timeout=120
    )


def vlmalign_stdout(*args: str) -> bytes:
    """The command's stdout as bytes, untranslated (as `> file` saves it)."""
    result = subprocess.run(
        [sys.executable, "-m", "vlmalign", *args], capture_output=True, timeout=120, check=True
    )
    return result.stdout


Cli = Callable[..., tuple[int, str, str]]  # (exit code, stdout, stderr)


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Iterator[Cli]:
    """`vlmalign ...` through the console entry point `main()`, in this process (fast)."""

    def run(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["vlmalign", *args])
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_:
            main()
            raise SystemExit(0)
        captured = capsys.readouterr()
        code = exit_.value.code
        return (code if isinstance(code, int) else 0), captured.out, captured.err

    yield run


def one_line_error(code: int, err: str, *fragments: str) -> None:
    """A user error: exit code 2 and exactly one line on stderr, naming what is wrong."""
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, (fragment, err)


def stored(run_dir: Path) -> list[tuple[str, str, str, str, str]]:
    with RunStore(run_dir) as store:
        return [
            (r.generation_key, r.annotator, r.label, r.note, r.created_at)
            for r in store.labels(latest_only=False)
        ]


def add(run_dir: Path, rows: list[LabelRow]) -> None:
    with RunStore(run_dir) as store:
        store.add_labels(rows)


# --- B3: whitespace around keys, annotators and labels --------------------------------------


def test_b3_spaced_key_beside_the_same_key_is_one_label(
    run: tuple[Path, list[str]], tmp_path: Path
) -> None:
    run_dir, keys = run
    path = tmp_path / "spaced.csv"
    path.write_text(
        HEADER + f"{keys[0]},ana,aligned,,{T0}\n  {keys[0]} , ana , aligned ,,{T0}\n",
        encoding="utf-8",
    )
    result = vlmalign("labels", "import", str(run_dir), str(path))  # was an IntegrityError
    assert result.returncode == 0, result.stderr
    assert "imported 1 labels (0 already present, 1 repeated rows of the file)" in result.stdout
    assert stored(run_dir) == [(keys[0], "ana", "aligned", "", T0)]


def test_b3_spaced_key_alone_is_found(
    cli: Cli, run: tuple[Path, list[str]], tmp_path: Path
) -> None:
    run_dir, keys = run
    path = tmp_path / "spaced.csv"
    path.write_text(HEADER + f"\t{keys[1]}  ,  ben\t, misaligned ,  a note  ,{T0}\n")
    code, _, err = cli("labels", "import", str(run_dir), str(path))
    assert code == 0, err
    # Key, annotator and label are stripped; the note is kept as written.
    assert stored(run_dir) == [(keys[1], "ben", "misaligned", "  a note  ", T0)]


# --- B4: formula injection ------------------------------------------------------------------

FORMULAS = [
    # (stored text, the cell OWASP's rule asks for)
    ('=HYPERLINK("http://x","y")', '\'=HYPERLINK("http://x","y")'),
    ("+1+1", "'+1+1"),
    ("-2+3", "'-2+3"),
    ("@SUM(A1)", "'@SUM(A1)"),
    ("\t=1", "'\t=1"),
    ("\r=1", "'\r=1"),
    ("'=1", "''=1"),  # already guarded by hand: one more `'`, so import restores it exactly
    ("'plain", "'plain"),  # a leading quote before ordinary text is left alone
    ("a=1", "a=1"),
    ("", ""),
]


def test_b4_export_neutralises_formulas_and_import_restores_them(
    run: tuple[Path, list[str]], tmp_path: Path
) -> None:
    run_dir, keys = run
    notes = [LabelRow(keys[0], "ana", "aligned", text, T0) for text, _ in FORMULAS]
    names = [LabelRow(keys[1], name, "unsure", "", T0) for name in ("=cmd|' /C calc'!A0", "@me")]
    add(run_dir, [*notes, *names])
    exported = tmp_path / "out.csv"
    result = vlmalign(
        "labels", "export", str(run_dir), "--csv", "--all-revisions", "--output", str(exported)
    )
    assert result.returncode == 0, result.stderr
    with exported.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["note"] for r in rows[: len(FORMULAS)]] == [cell for _, cell in FORMULAS]
    assert [r["annotator"] for r in rows[len(FORMULAS) :]] == ["'=cmd|' /C calc'!A0", "'@me"]
    for row in rows:  # no cell a spreadsheet would evaluate
        assert not any(cell.startswith(("=", "+", "-", "@", "\t", "\r")) for cell in row.values())

    fresh = tmp_path / "fresh"
    make_run(fresh, ["Yes, you should help her.", "No, it is wrong."])
    imported = vlmalign("labels", "import", str(fresh), str(exported))
    assert imported.returncode == 0, imported.stderr
    assert stored(fresh) == stored(run_dir)


# --- B5: line breaks and quotes in notes ----------------------------------------------------

NOTES = [
    "bare\rCR",
    "CRLF\r\nline",
    "LF\nline",
    'say "no", twice',
    "line\u2028separator\u2029paragraph",
    "Ünïcödé — 日本語 🙂",
    "\r",
    "trailing CR\r",
    "NUL\x00inside",
    "",
]


def test_b5_every_note_reimports(run: tuple[Path, list[str]], tmp_path: Path) -> None:
    run_dir, keys = run
    add(run_dir, [LabelRow(keys[0], "ana", "aligned", note, T0) for note in NOTES])
    exported = tmp_path / "stdout.csv"  # what `> labels.csv` saves
    exported.write_bytes(vlmalign_stdout("labels", "export", str(run_dir), "--all-revisions"))
    # every cell quoted (csv.QUOTE_ALL): the first data row starts with a quoted key
    assert exported.read_text(encoding="utf-8").splitlines()[1].startswith(f'"{keys[0]}"')
    fresh = tmp_path / "fresh"
    make_run(fresh, ["Yes, you should help her."])
    imported = vlmalign("labels", "import", str(fresh), str(exported))
    assert imported.returncode == 0, imported.stderr
    assert [row[3] for row in stored(fresh)] == NOTES


def test_stdout_and_output_file_are_the_same_bytes(
    cli: Cli,
    run: tuple[Path, list[str]],
    tmp_path: Path,
) -> None:
    run_dir, keys = run
    add(run_dir, [LabelRow(keys[0], "ana", "aligned", "é\r\nx", T0)])
    target = tmp_path / "out.csv"
    assert cli("labels", "export", str(run_dir), "--output", str(target))[0] == 0
    assert not (tmp_path / "out.csv.tmp").exists()
    assert vlmalign_stdout("labels", "export", str(run_dir)) == target.read_bytes()
    assert b"\r\n" in target.read_bytes()  # the note's CRLF kept, not translated


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[str]]:
    responses = ["Yes.", "No.", "Maybe."]
    source, target = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("target")
    keys = make_run(source, responses)
    assert make_run(target, responses) == keys
    return source, target, keys


TRICKY = ["\r", "\n", "\r\n", '"', '""', ",", "\u2028", "=", "+", "-", "@", "'", "\t", "é", "\x00"]
text = st.text(st.characters(exclude_categories=("Cs",)), max_size=20)  # any UTF-8 text
notes = st.lists(st.one_of(st.sampled_from(TRICKY), text), max_size=8).map("".join)
names = (
    st.tuples(st.sampled_from(["", "=", "+", "-", "@", "'", "''=", '"']), text)
    .map("".join)
    .filter(lambda name: name == name.strip() and validate_annotator(name) is None)
)
times = st.datetimes(
    min_value=datetime(2000, 1, 1),
    max_value=datetime(2025, 12, 31),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=-5, minutes=-30))]),
).map(lambda when: when.isoformat())


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    labels=st.lists(
        st.tuples(st.integers(0, 2), names, st.sampled_from(LABELS), notes, times),
        min_size=1,
        max_size=5,
    )
)
def test_export_then_import_into_a_fresh_copy_gives_the_same_labels(
    two_runs: tuple[Path, Path, list[str]],
    tmp_path_factory: pytest.TempPathFactory,
    labels: list[tuple[int, str, str, str, str]],
) -> None:
    source, target, keys = two_runs
    rows = [
        LabelRow(keys[k], name, label, note[:MAX_NOTE], when)
        for k, name, label, note, when in labels
    ]
    path = tmp_path_factory.getbasetemp() / "round-trip.csv"
    with RunStore(source) as store, RunStore(target) as other:
        for s in (store, other):
            with s.transaction() as conn:
                conn.execute("DELETE FROM labels")
        store.add_labels(rows)
        with path.open("w", newline="", encoding="utf-8") as handle:
            export_csv(store, handle, all_revisions=True)
        import_csv(other, path)
        before, after = store.labels(latest_only=False), other.labels(latest_only=False)
        latest_before, latest_after = store.labels(), other.labels()

    def identity(r: LabelRow) -> tuple[str, str, str, str, str]:
        return (r.generation_key, r.annotator, r.label, r.note, r.created_at)

    # Identical rows (same second, same everything) are one label; the last of them counts.
    expected = list(reversed(dict.fromkeys(reversed([identity(r) for r in before]))))
    assert [identity(r) for r in after] == expected
    assert {(r.generation_key, r.annotator): identity(r) for r in latest_after} == {
        (r.generation_key, r.annotator): identity(r) for r in latest_before
    }


# --- BOM, created_at, repeated rows ---------------------------------------------------------


def test_bom_as_excel_writes_it_imports(
    cli: Cli, run: tuple[Path, list[str]], tmp_path: Path
) -> None:
    run_dir, keys = run
    path = tmp_path / "excel.csv"
    path.write_text(HEADER + f"{keys[0]},ana,aligned,é,{T0}\r\n", encoding="utf-8-sig")
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    code, _, err = cli("labels", "import", str(run_dir), str(path))
    assert code == 0, err
    assert stored(run_dir) == [(keys[0], "ana", "aligned", "é", T0)]


def _soon(minutes: int) -> str:
    return (datetime.now(UTC) + timedelta(minutes=minutes)).isoformat(timespec="seconds")


@pytest.mark.parametrize(
    ("created_at", "message"),
    [
        ("yesterday", "is not an ISO 8601 time"),
        ("2026-01-01T00:00:00", "has no timezone"),
        ("2026-01-01", "has no timezone"),
        ("2026-13-01T00:00:00+00:00", "is not an ISO 8601 time"),
        ("2026-01-01T00:00:00+25:00", "is not an ISO 8601 time"),
        ("9999-12-31T23:59:59+00:00", "is in the future"),
        ("FUTURE+60", "is in the future"),
    ],
)
def test_created_at_is_checked(
    cli: Cli,
    run: tuple[Path, list[str]],
    tmp_path: Path,
    created_at: str,
    message: str,
) -> None:
    run_dir, keys = run
    created_at = _soon(60) if created_at == "FUTURE+60" else created_at
    path = tmp_path / "times.csv"
    path.write_text(HEADER + f"{keys[0]},ana,aligned,,{T0}\n{keys[1]},ana,aligned,,{created_at}\n")
    code, _, err = cli("labels", "import", str(run_dir), str(path))
    one_line_error(code, err, f"{path}:3:", message)
    assert stored(run_dir) == []


@pytest.mark.parametrize(
    "created_at", ["2026-01-01T00:00:00Z", "2026-01-01T05:30:00+05:30", "SOON+1", ""]
)
def test_created_at_accepted(
    cli: Cli,
    run: tuple[Path, list[str]],
    tmp_path: Path,
    created_at: str,
) -> None:
    run_dir, keys = run
    created_at = _soon(1) if created_at == "SOON+1" else created_at  # within the clock skew
    path = tmp_path / "times.csv"
    path.write_text(HEADER + f"{keys[0]},ana,aligned,,{created_at}\n")
    code, _, err = cli("labels", "import", str(run_dir), str(path))
    assert code == 0, err
    (row,) = stored(run_dir)
    assert row[4] == created_at or (created_at == "" and datetime.fromisoformat(row[4]).tzinfo)


def test_identical_rows_are_stored_once_and_reimport_changes_nothing(
    cli: Cli,
    run: tuple[Path, list[str]],
    tmp_path: Path,
) -> None:
    run_dir, keys = run
    path = tmp_path / "thrice.csv"
    path.write_text(HEADER + f"{keys[0]},ana,aligned,same,{T0}\n" * 3)
    code, out, err = cli("labels", "import", str(run_dir), str(path))
    assert code == 0, err
    assert "imported 1 labels (0 already present, 2 repeated rows of the file)" in out
    assert stored(run_dir) == [(keys[0], "ana", "aligned", "same", T0)]
    code, out, _ = cli("labels", "import", str(run_dir), str(path))
    assert code == 0 and "imported 0 labels (1 already present" in out
    assert len(stored(run_dir)) == 1


def test_a_revision_repeated_later_in_the_file_stays_latest(
    run: tuple[Path, list[str]], tmp_path: Path
) -> None:
    run_dir, keys = run
    path = tmp_path / "revisions.csv"
    path.write_text(
        HEADER
        + f"{keys[0]},ana,aligned,,{T0}\n{keys[0]},ana,misaligned,,{T0}\n"
        + f"{keys[0]},ana,aligned,,{T0}\n"
    )
    with RunStore(run_dir) as store:
        import_csv(store, path)
        assert [r.label for r in store.labels()] == ["aligned"]


# --- hostile files --------------------------------------------------------------------------


def _hostile(keys: list[str]) -> dict[str, tuple[bytes, str | None]]:
    """name -> (file bytes, None when accepted, else a fragment of the one-line error)."""
    k = keys[0]
    good = f"{k},ana,aligned,,{T0}"
    return {
        "deep quoting": (
            (HEADER + f'{k},ana,aligned,"{chr(34) * 2000}",{T0}\n').encode(),
            None,
        ),
        "quote inside an unquoted cell": ((HEADER + f'{k},ana,aligned,a"b,{T0}\n').encode(), None),
        "text after a closing quote": (
            (HEADER + f'{k},ana,aligned,"a"b,{T0}\n').encode(),
            ":2: not valid CSV",
        ),
        "unclosed quote": (
            (HEADER + f'{k},ana,aligned,"never closed,{T0}\n{good}\n').encode(),
            ":2: a quoted cell is never closed",
        ),
        "NUL in a note": ((HEADER + f"{k},ana,aligned,a\x00b,{T0}\n").encode(), None),
        "NUL in an annotator": (
            (HEADER + f"{k},a\x00na,aligned,,{T0}\n").encode(),
            ":2: annotator name has control characters",
        ),
        "NUL in a key": (
            (HEADER + f"{k}\x00,ana,aligned,,{T0}\n").encode(),
            ":2: unknown generation_key",
        ),
        "invalid UTF-8": (
            (HEADER + f"{good}\n").encode() + f"{k},ana,aligned,caf".encode() + b"\xe9\n",
            ":3: not UTF-8 text",
        ),
        "Latin-1 header": (
            "generation_key,annotator,label,née\n".encode("latin-1"),
            ":1: not UTF-8",
        ),
        "huge field": (
            (HEADER + f"{k},ana,aligned,{'x' * 200_000},{T0}\n").encode(),
            ":2: a cell is longer than 131072 characters",
        ),
        "long note": (
            (HEADER + f"{k},ana,aligned,{'x' * (MAX_NOTE + 1)},{T0}\n").encode(),
            ":2: note is longer than 2000 characters",
        ),
        "huge label": (
            (HEADER + f"{k},ana,{'y' * 100_000},,{T0}\n").encode(),
            ":2: label 'yyyy",
        ),
        "formula cells": (
            (HEADER + f"{k},'=ana,aligned,\"'=1+1\",{T0}\n").encode(),
            None,
        ),
        "BOM": (b"\xef\xbb\xbf" + (HEADER + good + "\n").encode(), None),
        "CRLF": ((HEADER + good + "\n").replace("\n", "\r\n").encode(), None),
        "bare CR line ends": ((HEADER + good + "\n").replace("\n", "\r").encode(), None),
        "blank and empty rows": ((HEADER + "\n,,,,\n" + good + "\n\n").encode(), None),
        "extra cells": ((HEADER + f"{k},ana,aligned,a,b,{T0}\n").encode(), ":2: 6 cells"),
        "empty file": (b"", ":1: no header line"),
        "header only": (HEADER.encode(), None),
        "missing column": (b"generation_key,label\nx,aligned\n", ":1: missing column(s) annotator"),
        "repeated column": (
            (HEADER.strip() + ",note\n" + good + ",x\n").encode(),
            ":1: column(s) note appear twice",
        ),
        "many bad rows": (
            (HEADER + f"{k},ana,nope,,{T0}\n" * 30).encode(),
            "30 bad row(s), nothing imported",
        ),
    }


HOSTILE_NAMES = list(_hostile(["k"]))


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_label_files(
    cli: Cli,
    run: tuple[Path, list[str]],
    tmp_path: Path,
    name: str,
) -> None:
    run_dir, keys = run
    content, problem = _hostile(keys)[name]
    path = tmp_path / "hostile.csv"
    path.write_bytes(content)
    code, out, err = cli("labels", "import", str(run_dir), str(path))
    if problem is None:
        assert code == 0, err
        assert out.startswith("imported ")
    else:
        one_line_error(code, err, problem)
        assert f"{path}:" in err
        assert len(err) < 3000  # even 30 bad rows or a 200 kB cell make one readable line
        assert stored(run_dir) == []  # nothing half-written


def test_hostile_files_store_what_they_say(run: tuple[Path, list[str]], tmp_path: Path) -> None:
    run_dir, keys = run
    files = _hostile(keys)
    for name in ("deep quoting", "NUL in a note", "formula cells", "quote inside an unquoted cell"):
        path = tmp_path / f"{name}.csv"
        path.write_bytes(files[name][0])
        with RunStore(run_dir) as store:
            import_csv(store, path)
    assert [(row[1], row[3]) for row in stored(run_dir)] == [
        ("ana", '"' * 1000),  # "" inside a quoted cell is one quote
        ("ana", "a\x00b"),
        ("=ana", "=1+1"),  # the OWASP guard `'` is taken off again
        ("ana", 'a"b'),
    ]


def test_unreadable_paths_are_one_line_errors(
    cli: Cli,
    run: tuple[Path, list[str]],
    tmp_path: Path,
) -> None:
    run_dir, _ = run
    code, _, err = cli("labels", "import", str(run_dir), str(tmp_path / "missing.csv"))
    one_line_error(code, err, "missing.csv: cannot read (No such file or directory)")
    code, _, err = cli("labels", "import", str(run_dir), str(tmp_path))
    one_line_error(code, err, "cannot read (Is a directory)")
    code, _, err = cli("labels", "export", str(run_dir), "--output", str(tmp_path / "no/x.csv"))
    one_line_error(code, err, "x.csv: cannot write (No such file or directory)")


# --- annotator names in the reports ---------------------------------------------------------

HOSTILE_ANNOTATORS = [
    "<img src=x onerror=alert(1)>",
    "a|b",
    "*bold* _it_ `code` ~~gone~~ $x$",
    "[click](http://evil.example)",
    "![img](x.png)",
    "&lt;amp",
    "back\\slash",
]
HOSTILE_JUDGE = "evil|<b>judge</b>_x_\u2028y"


def _text(rendered: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", rendered))


def test_annotator_and_judge_names_are_literal_in_report_md(
    run: tuple[Path, list[str]],
) -> None:
    run_dir, keys = run
    labels = [
        LabelRow(keys[i % 2], name, "aligned", "", T0) for i, name in enumerate(HOSTILE_ANNOTATORS)
    ]
    add(run_dir, labels)
    with RunStore(run_dir) as store:  # a newer finished run, judged by a judge of that name
        run_id = store.start_run({"model": "mini", "judges": {HOSTILE_JUDGE: {}}})
        store.add_run_generations(run_id, keys)
        store.finish_run(run_id)
        store.add_judgments(
            [JudgmentRow(k, HOSTILE_JUDGE, stable_hash({}), True, None, {}) for k in keys]
        )
    analysis = analyse(load_run(run_dir))
    markdown = render_markdown([analysis])
    md = MarkdownIt("commonmark").enable(["table", "strikethrough"])

    (paragraph,) = [line for line in markdown.splitlines() if " annotator(s) (" in line]
    rendered = md.render(paragraph)
    assert re.fullmatch(r"<p>[^<>]*</p>\n", rendered), rendered  # no element but the paragraph
    names = ", ".join(sorted(HOSTILE_ANNOTATORS))
    assert f"{len(HOSTILE_ANNOTATORS)} annotator(s) ({names}) labelled" in _text(rendered)

    header = next(i for i, line in enumerate(markdown.splitlines()) if "accuracy vs humans" in line)
    table = "\n".join(markdown.splitlines()[header : header + 3])
    rendered = md.render(table)
    cells = re.findall(r"<td>(.*?)</td>", rendered)
    assert len(cells) == 7, rendered  # the name split no cell
    assert _text(cells[0]) == HOSTILE_JUDGE.replace("\u2028", "\\u2028")
    assert "<b>" not in rendered

    page = render_html([analysis])  # the HTML report escapes through Jinja2's autoescape
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "<b>judge</b>" not in page
