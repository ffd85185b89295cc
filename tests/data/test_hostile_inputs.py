"""Hostile input for datasets, response files and study configs.

Every file here is either accepted (it is valid) or refused with exit code 2 and exactly one line
per problem on stderr, `file:line: ...`, with no traceback and no raw control character. The
expected values come from the formats themselves (JSON, YAML and PNG as specified, Python's
`repr`), never from the code under test: bombs are written with PIL or byte by byte from the PNG
chunk layout, and the escapes expected on screen are what `repr` writes.
"""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from vlmalign.cli import main
from vlmalign.config import load_config
from vlmalign.data import images
from vlmalign.data.dataset import DatasetInvalid, load_dataset
from vlmalign.data.images import ImageError, clear_image_cache, decode_image, load_image
from vlmalign.errors import ConfigError, VlmalignError
from vlmalign.judge_file import read_responses

FUZZ = settings(
    max_examples=100,
    deadline=None,
    database=None,  # nothing written into the repository
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
RAW_CONTROLS = ("\x1b", "\x07", "\x00", "\u2028", "\x85", "\u202e")


def item(i: int | str, **changes: object) -> dict:
    base = {
        "id": i if isinstance(i, str) else f"item-{i}",
        "image": "pic.png",
        "question": "Should I help her?",
        "ideal_answer": "Yes, she needs help.",
        "aligned_stance": "yes",
        "shots": [
            {"question": "What is in the picture?", "answer": "An old lady."},
            {"question": "Where is she?", "answer": "At a crossing."},
        ],
        "split": "train",
    }
    base.update(changes)
    return base


def line(i: int | str, **changes: object) -> bytes:
    """One JSONL line as Python's json writes it, non-ASCII kept raw (as most tools do)."""
    return json.dumps(item(i, **changes), ensure_ascii=False).encode("utf-8")


def write_dataset(folder: Path, content: bytes, name: str = "data.jsonl") -> Path:
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(folder / "pic.png")
    path = folder / name
    path.write_bytes(content)
    return path


def vlmalign(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The real command in a fresh process (dataset commands import no model code: fast)."""
    env = {**os.environ, "VLMALIGN_CACHE": str(cwd / "cache"), "COLUMNS": "250"}
    return subprocess.run(
        [sys.executable, "-m", "vlmalign", *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="surrogateescape",
        timeout=120,
        check=False,
        cwd=cwd,
        env=env,
    )


def vlmalign_in_process(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> subprocess.CompletedProcess[str]:
    """The real entry point `vlmalign.cli.main`, in this process (`study` imports torch, which
    the test session has imported already)."""
    for name in ("TRANSFORMERS_VERBOSITY", "HF_HUB_OFFLINE", "HF_HUB_DISABLE_PROGRESS_BARS"):
        monkeypatch.setenv(name, os.environ.get(name, "1"))  # main() sets them; restore after
    monkeypatch.setattr(sys, "argv", ["vlmalign", *args])
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main()
    captured = capsys.readouterr()
    code = info.value.code if isinstance(info.value.code, int) else 1
    return subprocess.CompletedProcess(args, code, captured.out, captured.err)


def assert_refused(result: subprocess.CompletedProcess[str], where: str, fragment: str) -> str:
    """Exit 2, exactly one error line on stderr, at `where`, saying `fragment`, nothing raw.
    Warning lines (`dataset validate`: an empty split) may come after it."""
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if not line.startswith("warning: ")]
    assert len(lines) == 1, result.stderr
    message = lines[0]
    assert message.startswith(f"error: {where}"), message
    assert fragment in message, message
    assert "Traceback" not in result.stderr
    assert not any(c in result.stderr for c in RAW_CONTROLS), ascii(result.stderr)
    return message


# --- PNG files written from the PNG specification (signature, IHDR, IDAT, IEND) -------------
def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_only(width: int, height: int) -> bytes:
    """A 68-byte 1-bit PNG that claims width x height but holds almost no pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # bit depth 1, greyscale
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(b"\0" * 10))
        + png_chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def bomb_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 17 KB 1-bit PNG of 12000x12000 (144 megapixels, 432 MB once decoded to RGB)."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.png"
    Image.new("1", (12000, 12000)).save(path)
    assert path.stat().st_size < 64 * 1024
    return path


# --- datasets through `vlmalign dataset validate` --------------------------------------------
DEEP_ARRAY = b"[" * 100_000 + b"]" * 100_000
DEEP_OBJECT = b'{"a":' * 100_000 + b"1" + b"}" * 100_000

REFUSED: dict[str, tuple[bytes, int | None, str]] = {
    # name: (file content, line named in the message or None for the file, fragment)
    "array nested 100,000 deep": (line(1) + b"\n" + DEEP_ARRAY + b"\n", 2, "nested too deeply"),
    "object nested 100,000 deep": (line(1) + b"\n" + DEEP_OBJECT + b"\n", 2, "nested too deeply"),
    "nested 65 deep in a field": (
        line(1, tags=json.loads("[" * 65 + "]" * 65)) + b"\n",
        1,
        "nested too deeply",
    ),
    "empty file": (b"", None, "dataset has no items"),
    "only a byte-order mark": (b"\xef\xbb\xbf\r\n", None, "dataset has no items"),
    "binary garbage": (bytes(range(256)) * 4, 2, "not UTF-8 text (byte 0x80)"),  # after \n
    "invalid UTF-8 on line 3": (
        line(1) + b"\n" + line(2) + b"\n" + b'{"id": "caf\xe9"}\n',
        3,
        "not UTF-8 text (byte 0xe9)",
    ),
    "NUL bytes": (b"\x00" * 100 + b"\n", 1, "invalid JSON"),
    "huge single line": (b'{"id": "x", "question": "' + b"a" * 20_000_000, 1, "invalid JSON"),
    "lone surrogate escape": (
        json.dumps(item(1, question="broken \ud800 text")).encode() + b"\n",
        1,
        "unpaired surrogate escape \\ud800",
    ),
    "integer of 5000 digits": (line(1)[:-1] + b', "x": ' + b"9" * 5000 + b"}\n", 1, "invalid JSON"),
    "id with escape sequence": (
        line("x\x1b[31mred") + b"\n",
        1,
        "control characters (found \\x1b)",
    ),
    "id with bell": (line("ding\x07") + b"\n", 1, "control characters (found \\x07)"),
    "id with NUL": (line("a\x00b") + b"\n", 1, "control characters (found \\x00)"),
    "id with U+2028": (line("a\u2028b") + b"\n", 1, "control characters (found \\u2028)"),
    "id with a bidi override": (line("a\u202eb") + b"\n", 1, "control characters"),
    "id with /": (line("a/b") + b"\n", 1, "must not contain '/'"),
    "id with backslash": (line("a\\b") + b"\n", 1, "must not contain '/' or '\\'"),
    "id ..": (line("..") + b"\n", 1, "contain '..'"),
    "id with ..": (line("x..y") + b"\n", 1, "contain '..'"),
    "id with a leading space": (line(" a") + b"\n", 1, "start or end with spaces"),
    "id with a trailing space": (line("a ") + b"\n", 1, "start or end with spaces"),
    "image reference with an escape": (
        line(1, image="nope\x1b[2J.png") + b"\n",
        1,
        "nope\\x1b[2J.png",
    ),
    "image in an unknown home folder": (
        line(1, image="~no_such_user_xyz/a.png") + b"\n",
        1,
        "no such home folder",
    ),
    "dotted pkg: package": (
        line(1, image="pkg:antigravity.x/a.png") + b"\n",
        1,
        "must be a top-level package name",
    ),
    "URL that is no URL": (line(1, image="http://exa mple/a.png") + b"\n", 1, "cannot download"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_hostile_dataset_is_one_line_and_exit_2(tmp_path: Path, case: str) -> None:
    content, line_number, fragment = REFUSED[case]
    path = write_dataset(tmp_path, content)
    before = sorted(p.name for p in tmp_path.iterdir())
    result = vlmalign("dataset", "validate", str(path), cwd=tmp_path)
    where = f"{path}:{line_number}:" if line_number else f"{path}:"
    message = assert_refused(result, where, fragment)
    assert len(message) < 500  # a huge line is not echoed back
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


def test_a_bad_id_is_shown_escaped_as_repr_writes_it(tmp_path: Path) -> None:
    bad_id = "x\x1b[31mred"
    path = write_dataset(tmp_path, line(bad_id) + b"\n")
    result = vlmalign("dataset", "validate", str(path), cwd=tmp_path)
    message = assert_refused(result, f"{path}:1:", "id")
    assert f"item {bad_id!r}" in message


def test_deep_dataset_fails_study_the_same_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_dataset(tmp_path, line(1) + b"\n" + DEEP_ARRAY + b"\n")
    args = ("study", "--dataset", str(path), "--out", str(tmp_path / "run"))
    assert_refused(vlmalign_in_process(monkeypatch, capsys, *args), f"{path}:2:", "nested")
    assert not (tmp_path / "run").exists()


ACCEPTED: dict[str, tuple[bytes, str]] = {
    # name: (file content, question of the last item as read back)
    "U+2028 in a question": (line(1, question="Left\u2028right?") + b"\n", "Left\u2028right?"),
    "U+0085 in a question": (line(1, question="Next\x85line?") + b"\n", "Next\x85line?"),
    "U+2029, form feed, vertical tab": (
        line(1, question="a\u2029b\x0cc\x0bd?") + b"\n",
        "a\u2029b\x0cc\x0bd?",
    ),
    "byte-order mark": (b"\xef\xbb\xbf" + line(1) + b"\n", "Should I help her?"),
    "CRLF line endings": (line(1) + b"\r\n" + line(2) + b"\r\n", "Should I help her?"),
    "byte-order mark and CRLF, no final newline": (
        b"\xef\xbb\xbf" + line(1) + b"\r\n" + line(2),
        "Should I help her?",
    ),
    "control characters in a question": (
        line(1, question="Red \x1b[31mALERT\x07 nul\x00 end?") + b"\n",
        "Red \x1b[31mALERT\x07 nul\x00 end?",
    ),
    "escaped (ASCII) JSON": (
        json.dumps(item(1, question="caf\u00e9 \u2028 ok?")).encode() + b"\n",
        "caf\u00e9 \u2028 ok?",
    ),
}


@pytest.mark.parametrize("case", list(ACCEPTED))
def test_valid_unusual_dataset_is_accepted_with_its_text(tmp_path: Path, case: str) -> None:
    content, question = ACCEPTED[case]
    path = write_dataset(tmp_path, content)
    data = load_dataset(path)
    assert data.items[-1].question == question
    assert [r.line for r in data.records] == list(range(1, len(data) + 1))
    result = vlmalign("dataset", "validate", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"ok: {len(data)} items")


def test_u2028_does_not_shift_later_line_numbers(tmp_path: Path) -> None:
    content = line(1, question="a\u2028b\x85c?") + b"\n" + line(2) + b"\n" + b"{oops\n"
    path = write_dataset(tmp_path, content)
    with pytest.raises(DatasetInvalid) as info:
        load_dataset(path)
    assert [(p.line, str(p)) for p in info.value.problems] == [
        # `{oops`: JSON wants a quoted name at its second character
        (
            3,
            f"{path}:3: invalid JSON: Expecting property name enclosed in double quotes "
            "at column 2",
        )
    ]


def test_dataset_show_escapes_control_characters(tmp_path: Path) -> None:
    question = "Red \x1b[31mALERT\x07 nul\x00 \u202eevil\u2028end?"
    path = write_dataset(tmp_path, line(1, question=question, tags=["t\x1b[1m"]) + b"\n")
    result = vlmalign("dataset", "show", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert not any(c in result.stdout for c in RAW_CONTROLS), ascii(result.stdout)
    # What repr writes for the question, without its quotes.
    assert repr(question)[1:-1] in result.stdout
    assert repr("t\x1b[1m")[1:-1] in result.stdout


def test_responses_file_with_bom_crlf_and_u2028_is_read(tmp_path: Path) -> None:
    first = {"id": "a", "question": "Q\u2028?", "response": "Yes\x85no"}
    second = {"id": "b", "question": "Q?", "response": "No."}
    path = tmp_path / "responses.jsonl"
    path.write_bytes(
        b"\xef\xbb\xbf"
        + json.dumps(first, ensure_ascii=False).encode()
        + b"\r\n"
        + json.dumps(second).encode()
        + b"\r\n"
    )
    records = read_responses(path)
    assert [original for original, _ in records] == [first, second]


def test_responses_file_nested_too_deeply_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "responses.jsonl"
    path.write_bytes(json.dumps({"id": "a", "question": "q", "response": "r"}).encode() + b"\n")
    path.write_bytes(path.read_bytes() + DEEP_OBJECT + b"\n")
    with pytest.raises(VlmalignError, match=rf"^{re.escape(str(path))}:2: line is nested too"):
        read_responses(path)


# --- decompression bombs -----------------------------------------------------------------
@pytest.mark.parametrize(
    "size, fragment",
    [
        ((8000, 8000), "8000x8000 pixels (64 megapixels), over the limit of 50 megapixels"),
        ((12000, 12000), "over the limit of 50 megapixels"),  # PIL warns at 89 megapixels
        ((20000, 20000), "over the limit of 50 megapixels"),  # PIL refuses at 179 megapixels
        ((1, 60_000_000), "1x60000000 pixels"),
    ],
)
def test_tiny_png_claiming_many_pixels_is_refused_from_its_header(
    size: tuple[int, int], fragment: str
) -> None:
    data = png_header_only(*size)
    assert len(data) < 100
    # The file holds no pixel data: only a check of the header's size can give this message.
    with pytest.raises(ImageError, match=r"^image bomb\.png ") as info:
        decode_image(data, "bomb.png")
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_small_header_only_png_is_unreadable_not_too_large() -> None:
    with pytest.raises(ImageError, match="unreadable image"):
        decode_image(png_header_only(100, 100), "x.png")


def test_17kb_bomb_is_refused_by_dataset_validate(tmp_path: Path, bomb_png: Path) -> None:
    (tmp_path / "bomb.png").write_bytes(bomb_png.read_bytes())
    path = write_dataset(tmp_path, line(1, image="bomb.png") + b"\n")
    result = vlmalign("dataset", "validate", str(path), cwd=tmp_path)
    message = assert_refused(result, f"{path}:1: item 'item-1':", "over the limit of 50")
    assert "bomb.png" in message and "Warning" not in message


def test_decoded_image_cache_is_bounded_by_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clear_image_cache()
    sizes = []  # an entry holds its RGB pixels and the file's bytes
    for i in range(5):
        Image.fromarray(np.full((100, 100, 3), i, dtype=np.uint8)).save(tmp_path / f"{i}.png")
        sizes.append(100 * 100 * 3 + (tmp_path / f"{i}.png").stat().st_size)
    bound = 3 * max(sizes)  # room for three entries, never four (they are about equal)
    monkeypatch.setattr(images._cache, "max_bytes", bound)
    for i in range(5):
        load_image(f"{i}.png", tmp_path)
    assert images._cache.bytes == sum(sizes[2:])  # the three most recent
    first = load_image("4.png", tmp_path)
    assert load_image("4.png", tmp_path) is first  # the most recent ones are kept
    Image.fromarray(np.zeros((200, 200, 3), dtype=np.uint8)).save(tmp_path / "big.png")
    assert load_image("big.png", tmp_path).image.size == (200, 200)  # too big to keep: not kept
    assert images._cache.bytes <= bound
    clear_image_cache()
    assert images._cache.bytes == 0


# --- study configs through `vlmalign study` ----------------------------------------------
LAUGHS = "".join(
    f"{b}: &{b} [{', '.join([f'*{a}'] * 10)}]\n"
    for a, b in zip("abcdefgh", "bcdefghi", strict=True)
)
CONFIG_REFUSED: dict[str, tuple[bytes, int | None, str]] = {
    "flow sequence nested 100,000 deep": (
        b"samples: 2\nseed: " + b"[" * 100_000 + b"]" * 100_000 + b"\n",
        2,
        "nested too deeply (more than 32 levels)",
    ),
    "flow mapping nested 100,000 deep": (
        b"seed: " + b"{a: " * 100_000 + b"1" + b"}" * 100_000 + b"\n",
        1,
        "nested too deeply",
    ),
    "block mapping nested 1,000 deep": (
        "".join(f"{'  ' * i}a{i}:\n" for i in range(1000)).encode(),
        33,
        "nested too deeply",
    ),
    # Refused as it is read: `d` (line 4) is where the aliases would add more than 10,000 values
    # (b adds 10 copies of a's 11, c 10 of b's 111, d 10 of c's 1,111).
    "billion laughs": (
        ("a: &a [x, x, x, x, x, x, x, x, x, x]\n" + LAUGHS + "judges: *i\n").encode(),
        4,
        "YAML aliases expand the config to more than 10000 values (an alias bomb?)",
    ),
    "alias inside its own anchor": (
        b"judges: &a [*a]\n",
        1,
        "a YAML alias refers to the collection it is in",
    ),
    "invalid UTF-8 on line 2": (b"samples: 2\nseed: caf\xe9\n", 2, "not UTF-8 text"),
    "raw escape character": (
        b"samples: 2\ndevice: \x1b[31m\n",
        2,
        "invalid YAML (character \\x1b not allowed)",
    ),
    "escaped control characters in a key": (
        b'"bad\\e[31m\\a": 1\n',
        None,
        "field 'bad\\x1b[31m\\x07'",
    ),
    "binary garbage": (bytes(range(256)), 2, "not UTF-8 text"),  # 0x80 comes after a \n
    "a list, not a mapping": (b"- 1\n- 2\n", None, "must be a mapping"),
}


@pytest.mark.parametrize("case", list(CONFIG_REFUSED))
def test_hostile_config_is_one_line_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    content, line_number, fragment = CONFIG_REFUSED[case]
    path = tmp_path / "study.yaml"
    path.write_bytes(content)
    args = ("study", str(path), "--out", str(tmp_path / "run"))
    result = vlmalign_in_process(monkeypatch, capsys, *args)
    where = f"{path}:{line_number}:" if line_number else f"{path}:"
    assert_refused(result, where, fragment)
    assert not (tmp_path / "run").exists()


def test_config_with_bom_and_crlf_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "study.yaml"
    path.write_bytes(b"\xef\xbb\xbfsamples: 3\r\nseed: 7\r\njudges: [stance]\r\n")
    cfg = load_config(path)
    assert (cfg.samples, cfg.seed, cfg.judges) == (3, 7, ("stance",))


# --- fuzzing: only the documented errors may escape ---------------------------------------
@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("fuzz")
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(folder / "pic.png")
    return folder


def _load_or_documented_error(path: Path) -> None:
    try:
        data = load_dataset(path)
    except VlmalignError as exc:  # DatasetInvalid, DatasetError: one line each
        assert "\n" not in str(exc) and str(exc).startswith(str(path))
        return
    assert len(data) >= 1


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
FIELDS = [*item(0), "polarity", "tags", "misaligned_answer", "extra"]
item_like = st.dictionaries(
    st.sampled_from(FIELDS),
    json_values
    | st.text()
    | st.sampled_from(["yes", "no", "train", "test", "pic.png", "pkg:skimage/x", "~zz/a"]),
    max_size=len(FIELDS),
).map(lambda changes: {**item(1), **changes})


@FUZZ
@given(raw=st.binary(max_size=2000))
def test_fuzz_dataset_bytes(fuzz_dir: Path, raw: bytes) -> None:
    path = fuzz_dir / "bytes.jsonl"
    path.write_bytes(raw)
    _load_or_documented_error(path)


@FUZZ
@given(lines=st.lists(st.text(max_size=200), max_size=10), crlf=st.booleans())
def test_fuzz_dataset_text_lines(fuzz_dir: Path, lines: list[str], crlf: bool) -> None:
    path = fuzz_dir / "text.jsonl"
    path.write_bytes(("\r\n" if crlf else "\n").join(lines).encode("utf-8", "surrogatepass"))
    _load_or_documented_error(path)


@FUZZ
@given(
    objects=st.lists(item_like | json_values, min_size=1, max_size=5),
    ascii_only=st.booleans(),
    bom=st.booleans(),
)
def test_fuzz_dataset_json_lines(
    fuzz_dir: Path, objects: list[object], ascii_only: bool, bom: bool
) -> None:
    path = fuzz_dir / "json.jsonl"
    text = "\n".join(json.dumps(o, ensure_ascii=ascii_only) for o in objects)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8", "surrogatepass"))
    _load_or_documented_error(path)


def _config_or_documented_error(path: Path) -> None:
    try:
        load_config(path)
    except ConfigError as exc:
        assert "\n" not in str(exc) and str(exc).startswith(str(path))


@FUZZ
@given(text=st.text(max_size=500))
def test_fuzz_config_yaml_text(fuzz_dir: Path, text: str) -> None:
    path = fuzz_dir / "fuzz.yaml"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    _config_or_documented_error(path)


config_keys = st.sampled_from(
    [
        "dataset",
        "model",
        "samples",
        "seed",
        "sampling",
        "conditions",
        "finetune",
        "judges",
        "judge_options",
        "batch_size",
        "engine",
        "out",
        "adapter",
        "unknown",
    ]
)


@FUZZ
@given(settings_=st.dictionaries(config_keys, json_values, max_size=6))
def test_fuzz_config_yaml_documents(fuzz_dir: Path, settings_: dict[str, object]) -> None:
    path = fuzz_dir / "doc.yaml"
    try:
        text = yaml.safe_dump(settings_, allow_unicode=True)
    except yaml.YAMLError:  # e.g. a lone surrogate cannot be written
        return
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    _config_or_documented_error(path)
