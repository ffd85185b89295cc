"""A study config's YAML is bounded as it is read: alias bombs and huge integers are one line and
exit 2, within seconds and a few hundred MB, before any value is built.

The bombs are the "billion laughs" shape written here by hand: nine levels, each a list of nine
aliases of the level below, so the last one stands for 9**9 (387 million) strings; the file is a
few hundred bytes. The bound they must stay under (5 s, 500 MB) is the issue's, not the code's.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.data.test_hostile_inputs import assert_refused, vlmalign_in_process
from vlmalign.config import load_config, read_config_file
from vlmalign.errors import ConfigError

LEVELS = 9
WIDTH = 9
SECONDS = 5.0
PEAK_MB = 500


def laughs(names: list[str], indent: str) -> str:
    """`names[0]: &l1 [...9 strings]`, then each next name a list of 9 aliases of the one before."""
    lines = [f"{indent}{names[0]}: &l1 [{', '.join(['lol'] * WIDTH)}]\n"]
    for level, name in enumerate(names[1:], start=2):
        aliases = ", ".join([f"*l{level - 1}"] * WIDTH)
        lines.append(f"{indent}{name}: &l{level} [{aliases}]\n")
    return "".join(lines)


# Two placements, neither the issue's own: every level inside `dataset: values:` under item
# fields, and the anchors in a top-level mapping of their own with one alias under `values`.
VALUE_FIELDS = [
    "tags",
    "shots",
    "polarity",
    "misaligned_answer",
    "ideal_answer",
    "question",
    "image",
    "id",
    "aligned_stance",
]
BOMBS = {
    "levels under dataset values": (
        'dataset:\n  source: "hf:rows.json"\n  values:\n' + laughs(VALUE_FIELDS, "    ")
    ),
    "anchors elsewhere, one alias under values": (
        "anchors:\n"
        + laughs([f"k{i}" for i in range(LEVELS)], "  ")
        + f'dataset:\n  source: "hf:rows.json"\n  values:\n    question: *l{LEVELS}\n'
    ),
}

# Run the command in a child of a small Python process, which reports the child's peak memory
# (RUSAGE_CHILDREN) and wall time; the child's address space is capped at 3 GB so that code
# without the bound fails here instead of exhausting the machine.
MEASURE = """
import json, resource, subprocess, sys, time
def cap():
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
start = time.monotonic()
try:
    done = subprocess.run(sys.argv[1:], capture_output=True, text=True, errors="replace",
                          timeout=60, preexec_fn=cap)
    code, stderr = done.returncode, done.stderr
except subprocess.TimeoutExpired:
    code, stderr = None, "timed out after 60 s"
seconds = time.monotonic() - start
peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
print(json.dumps({"code": code, "stderr": stderr, "seconds": seconds, "peak_mb": peak_kb / 1024}))
"""


@pytest.mark.parametrize("placement", list(BOMBS))
def test_alias_bomb_config_is_refused_fast_and_small(tmp_path: Path, placement: str) -> None:
    text = BOMBS[placement]
    assert len(text.encode()) < 1024  # a bomb under 1 KB
    (tmp_path / "rows.json").write_text('{"text": "a", "image": "pic.png"}\n')
    config = tmp_path / "bomb.yaml"
    config.write_text(text)
    command = [sys.executable, "-m", "vlmalign", "dataset", "validate", str(config)]
    measured = subprocess.run(
        [sys.executable, "-c", MEASURE, *command],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
        cwd=tmp_path,
    )
    result = json.loads(measured.stdout)
    print(f"{placement}: {result['seconds']:.2f} s, peak {result['peak_mb']:.0f} MB")
    assert result["code"] == 2, result["stderr"]
    errors = [line for line in result["stderr"].splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in result["stderr"], result["stderr"]
    assert errors[0].startswith(f"error: {config}:") and "alias" in errors[0], errors[0]
    assert result["seconds"] < SECONDS
    assert result["peak_mb"] < PEAK_MB


@pytest.mark.parametrize(
    "text",
    [
        # under a setting that validation would read element by element
        "judge_options:\n  stance:\n"
        + laughs([f"j{i}" for i in range(LEVELS)], "    ")
        + f"judges: *l{LEVELS}\n",
        # as the keys of a mapping, and through a merge key
        "a: &a {x: 1, y: 2, z: 3, w: 4, v: 5, u: 6, t: 7, s: 8, r: 9}\n"
        + "".join(
            f"{b}: &{b} {{{', '.join(f'{b}{i}: *{a}' for i in range(WIDTH))}}}\n"
            for a, b in zip("abcdefgh", "bcdefghi", strict=True)
        )
        + "judge_options: {<<: *i}\n",
        # in a sequence of conditions
        "conditions:\n" + laughs([f"- c{i}" for i in range(LEVELS)], "  "),
    ],
    ids=["judge options", "mapping values and a merge key", "conditions"],
)
def test_alias_bombs_anywhere_are_refused_as_read(tmp_path: Path, text: str) -> None:
    path = tmp_path / "study.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as refused:
        read_config_file(path)
    message = str(refused.value)
    assert message.startswith(f"{path}:") and "alias bomb" in message, message
    assert "\n" not in message


def test_a_few_aliases_still_load(tmp_path: Path) -> None:
    path = tmp_path / "study.yaml"
    path.write_text(
        "judges: [stance, ethics]\n"
        "judge_options:\n  stance: &shared {device: cpu, batch_size: 4}\n  ethics: *shared\n"
        "conditions: [&zero {split: train, shots: 0}, {split: test, shots: 0}]\n"
        "finetuned_conditions: [*zero]\n"
    )
    config = load_config(path)
    assert config.judge_options["ethics"] == config.judge_options["stance"]
    assert config.judge_options["ethics"].device == "cpu"
    assert [(c.split, c.shots) for c in config.finetuned_conditions] == [("train", 0)]


def test_an_alias_of_its_own_collection_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "study.yaml"
    path.write_text("samples: 2\njudges: &a [stance, *a]\n")
    with pytest.raises(ConfigError) as refused:
        read_config_file(path)
    assert str(refused.value) == f"{path}:2: a YAML alias refers to the collection it is in"


@pytest.mark.parametrize(
    ("line", "key", "digits"),
    [
        ("seed: " + "7" * 5000, "seed", 5000),  # Python's int() refuses more than 4300 digits
        ("samples: -" + "1" * 31, "samples", 31),
        ("seed: 0x" + "f" * 40, "seed", 42),  # the digits as written, prefix included
        ("seed: 1_" + "0" * 30, "seed", 31),
    ],
    ids=["5000 digits", "31 digits, negative", "hexadecimal", "underscores"],
)
def test_a_huge_integer_is_one_line_naming_key_and_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    line: str,
    key: str,
    digits: int,
) -> None:
    path = tmp_path / "study.yaml"  # a quick study, should the integer be taken
    path.write_text(f"model: mock:ideal\n{line}\nfinetune: null\njudges: [stance]\n")
    result = vlmalign_in_process(
        monkeypatch, capsys, "study", str(path), "--out", str(tmp_path / "run")
    )
    message = assert_refused(result, f"{path}:2:", f"'{key}': an integer of {digits} digits")
    assert "at most 30" in message
    assert not (tmp_path / "run").exists()


def test_a_huge_integer_in_a_list_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "study.yaml"
    path.write_text("conditions:\n  - split: train\n    shots: 0\n  - [" + "9" * 100 + "]\n")
    with pytest.raises(ConfigError) as refused:
        read_config_file(path)
    assert str(refused.value) == (f"{path}:4: an integer of 100 digits; a setting takes at most 30")


def test_integers_of_up_to_30_digits_load(tmp_path: Path) -> None:
    path = tmp_path / "study.yaml"
    path.write_text("seed: " + "9" * 30 + "\nsamples: 3\n")
    config = load_config(path)
    assert config.seed == int("9" * 30) and config.samples == 3
