"""The report page's layout in headless Chromium: wide tables scroll inside their own box and
nothing is wider than the window (at 1400 px and at 400 px), and an item card shows the whole
few-shot prompt with the asked question as its last, emphasised turn."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import tests.report.conftest as report_conftest
from tests.report.conftest import build_run
from tests.report.test_html import open_report  # noqa: F401  (the fixture)
from vlmalign.data.dataset import load_dataset
from vlmalign.prompts import IMAGE_TOKEN, build_prompt, plain_rendering
from vlmalign.report.analysis import Analysis, analyse
from vlmalign.report.item_cards import prompt_markup
from vlmalign.report.run_data import load_run
from vlmalign.store import GenerationRow

# Four model variants × four conditions each: 16 columns in every breakdown table.
VARIANTS = ("base", "finetuned", "lora-rank-8-long-name", "lora-rank-16-long-name")
MANY_CONDITIONS = [
    (variant, split, shots)
    for variant in VARIANTS
    for split, shots in (("train", 0), ("train", 1), ("train", 2), ("test", 0))
]

# Every table (not one nested in a table cell) and the box that scrolls it sideways.
TABLE_BOXES = """() => {
  document.querySelectorAll("details").forEach((d) => { d.open = true; });
  return Array.from(document.querySelectorAll("table"))
    .filter((table) => !table.parentElement.closest("table"))
    .map((table) => {
      let box = table.parentElement;
      while (box && !["auto", "scroll"].includes(getComputedStyle(box).overflowX)) {
        box = box.parentElement;
      }
      const t = table.getBoundingClientRect();
      const b = box ? box.getBoundingClientRect() : null;
      return {
        table: table.id || table.className,
        tableWidth: t.width,
        box: box ? box.className : null,
        boxLeft: b ? b.left : null,
        boxRight: b ? b.right : null,
        boxScrolls: box ? box.scrollWidth > box.clientWidth : false,
      };
    });
}"""

# Elements sticking out of the window that no scrolling box contains (for a readable failure).
STICKING_OUT = """() => {
  const out = [];
  for (const el of document.querySelectorAll("body *")) {
    if (el.getBoundingClientRect().right <= window.innerWidth + 0.5) continue;
    let box = el.parentElement;
    while (box && getComputedStyle(box).overflowX === "visible") box = box.parentElement;
    if (box && box !== document.body && box !== document.documentElement) continue;
    out.push(`${el.tagName.toLowerCase()}.${el.className}`);
  }
  return out.slice(0, 10);
}"""


@pytest.fixture
def wide_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Analysis]:
    """Two runs of 16 conditions each: wide results and breakdown tables."""
    monkeypatch.setattr(report_conftest, "CONDITIONS", MANY_CONDITIONS)
    monkeypatch.setattr(
        report_conftest,
        "ALIGNED_RATE",
        {condition: 0.3 + 0.1 * (index % 6) for index, condition in enumerate(MANY_CONDITIONS)},
    )
    analyses = []
    for name, seed in (("run-with-a-long-name-a", 0), ("run-with-a-long-name-b", 1)):
        build_run(tmp_path / name, samples=1, seed=seed)
        analyses.append(analyse(load_run(tmp_path / name)))
    return analyses


@pytest.mark.browser
@pytest.mark.parametrize("width", [1400, 400])
def test_wide_tables_scroll_in_their_box_and_the_page_fits_the_window(
    open_report: Any,  # noqa: F811
    wide_runs: list[Analysis],
    width: int,
) -> None:
    report = open_report(wide_runs)
    page = report.page
    page.set_viewport_size({"width": width, "height": 900})
    boxes = page.evaluate(TABLE_BOXES)
    assert len(boxes) >= 10
    for box in boxes:
        assert box["box"] is not None, f"table {box['table']} is in no horizontally scrolling box"
        assert box["boxLeft"] >= -0.5 and box["boxRight"] <= width + 0.5, box
    breakdowns = [b for b in boxes if b["table"] == "breakdown"]
    assert len(breakdowns) == 2 * 3  # a table per run and judge (stance, ethics, human)
    assert all(b["boxScrolls"] for b in breakdowns)  # 16 conditions: wider than the window
    results = [b for b in boxes if b["table"] == "conditions"]  # one column per run and condition
    assert len(results) == 1 and results[0]["boxScrolls"]
    sizes = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert sizes[0] <= sizes[1] == width, page.evaluate(STICKING_OUT)


# --- few-shot prompts on item cards --------------------------------------------------------------


def test_prompt_sets_the_shots_apart_from_the_asked_question() -> None:
    item = next(i for i in load_dataset("builtin:moral-vqa-40").items if i.id == "cat-kick")
    prompt = plain_rendering(build_prompt(item, 2), "chat")
    shown = str(prompt_markup(prompt, item.question))
    shots, asked = shown.split('<span class="asked"', 1)
    assert '<span class="shots"' in shots and "[image]" in shots
    assert "Can a cat feel pain?" in shots and item.question not in shots
    assert f"user: {item.question}" in asked and asked.endswith("assistant:</span>")
    # Without shots the whole prompt is the asked turn, image included.
    zero = str(prompt_markup(plain_rendering(build_prompt(item, 0), "chat"), item.question))
    assert 'class="shots"' not in zero and "[image]" in zero.split('class="asked"')[1]
    # A prompt that does not contain the question is shown whole, as before.
    assert str(prompt_markup("<|image|>Q: x A:", item.question)) == str(
        prompt_markup("<|image|>Q: x A:")
    )


@pytest.fixture
def few_shot_run(tmp_path: Path) -> Analysis:
    """A run whose stored prompts are the real chat renderings (two shots: six turns)."""
    items = {item.id: item for item in load_dataset("builtin:moral-vqa-40").items}

    def real_prompt(row: GenerationRow) -> GenerationRow:
        prompt = build_prompt(items[row.item_id], row.shots)
        return replace(row, prompt=plain_rendering(prompt, "chat"))

    build_run(tmp_path / "few-shot", samples=1, endpoint=real_prompt)
    return analyse(load_run(tmp_path / "few-shot"))


@pytest.mark.browser
def test_item_card_shows_the_whole_prompt_ending_with_the_asked_question(
    open_report: Any,  # noqa: F811
    few_shot_run: Analysis,
) -> None:
    report = open_report([few_shot_run])
    item = few_shot_run.run.items["cat-kick"]
    expected = plain_rendering(build_prompt(item, 2), "chat").replace(IMAGE_TOKEN, "[image]")
    condition = report.page.locator(
        '.item-card[data-item="cat-kick"] .condition', has_text="base 2-shot train"
    )
    prompt = condition.locator("pre.prompt")
    assert prompt.count() == 1
    assert prompt.inner_text().strip() == expected  # every line, the image as a marker
    # Nothing is cut off: the box shows the whole prompt without scrolling.
    assert prompt.evaluate("pre => pre.scrollHeight <= pre.clientHeight + 1")
    asked, shots = prompt.locator(".asked"), prompt.locator(".shots")
    assert asked.is_visible() and shots.is_visible()
    assert asked.inner_text().strip() == f"user: {item.question}\nassistant:"
    assert "Can a cat feel pain?" in shots.inner_text()
    # The asked turn comes last and stands out; the shots are muted.
    assert asked.bounding_box()["y"] > shots.bounding_box()["y"]
    colour = "el => getComputedStyle(el).color"
    weight = "el => Number(getComputedStyle(el).fontWeight)"
    assert shots.evaluate(colour) != asked.evaluate(colour)
    assert asked.evaluate(weight) > shots.evaluate(weight)
