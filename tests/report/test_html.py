"""The self-contained HTML report: unit tests of the plot and the escaping, and the rendered page
in headless Chromium with every network request blocked."""

from __future__ import annotations

import base64
import hashlib
import html
import io
import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from tests.report.conftest import build_run

from vlmalign.data.images import ImageError
from vlmalign.report import html as report_html
from vlmalign.report.analysis import Analysis, Cell, analyse
from vlmalign.report.html import decimal, prompt_markup, render_html
from vlmalign.report.plot import accuracy_png
from vlmalign.report.reference import reference_for
from vlmalign.report.run_data import load_run

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def analysis(synthetic_run: Path) -> Analysis:
    return analyse(load_run(synthetic_run))


@pytest.fixture
def second_analysis(second_run: Path) -> Analysis:
    return analyse(load_run(second_run))


def make_cell(judge: str, model: str, split: str, shots: int, accuracy: float | None) -> Cell:
    low, high = (None, None) if accuracy is None else (accuracy - 0.1, min(1.0, accuracy + 0.1))
    return Cell(model, split, shots, judge, accuracy, 30, 0, 0, 30, 1, low, high, "wilson", run="r")


# --- plot ---------------------------------------------------------------------------------------


def test_plot_is_a_png_with_one_panel_per_judge() -> None:
    cells = [
        make_cell(judge, model, split, shots, accuracy)
        for judge in ("stance", "ethics", "human")
        for (model, split, shots), accuracy in (
            (("base", "train", 0), 0.3),
            (("base", "train", 1), 0.45),
            (("finetuned", "test", 0), None),  # no verdicts: no bar, no crash
        )
    ]
    png = accuracy_png({"run-a": cells, "run-b": cells[:4]})
    assert png.startswith(PNG_SIGNATURE)
    with Image.open(io.BytesIO(png)) as image:
        image.verify()
        assert image.width > 600 and image.height > 300


def test_plot_of_nothing_is_still_a_png() -> None:
    assert accuracy_png({"empty": []}).startswith(PNG_SIGNATURE)


# --- escaping (no browser) ----------------------------------------------------------------------


def test_prompt_marks_the_image_and_escapes_the_rest() -> None:
    shown = prompt_markup("<|image|>Q: is <b>this</b> fine? A:")
    assert str(shown).startswith('<span class="image-marker"')
    assert "[image]</span>Q: is &lt;b&gt;this&lt;/b&gt; fine? A:" in str(shown)
    assert "<|image|>" not in str(shown)


def test_everything_from_the_store_is_escaped(tmp_path: Path) -> None:
    hostile = "<img src=x onerror=alert(1)>"
    run_dir = tmp_path / hostile  # the run's name is shown too
    build_run(run_dir, samples=1)
    run = load_run(run_dir)
    first = run.generations[0]
    item = run.items[first.item_id]
    run = replace(
        run,
        generations=(
            replace(first, response=f"</div><script>alert(2)</script>{hostile}"),
            *run.generations[1:],
        ),
        items={**run.items, item.id: item.model_copy(update={"question": f"Q {hostile}"})},
    )
    page = render_html([analyse(run)])
    assert hostile not in page
    assert "<script>alert(2)" not in page
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in page
    assert f"Q {hostile}".replace("<", "&lt;").replace(">", "&gt;") in page
    assert page.count("<script>") == 1  # only the report's own filter script


def test_only_the_reports_own_script_may_run(analysis: Analysis) -> None:
    page = render_html([analysis])
    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page)
    script = re.search(r"<script>(.*?)</script>", page, re.DOTALL)
    assert policy and script
    digest = base64.b64encode(hashlib.sha256(script.group(1).encode()).digest()).decode()
    rules = html.unescape(policy.group(1))  # the browser reads the attribute unescaped
    assert f"script-src 'sha256-{digest}'" in rules
    assert "default-src 'none'" in rules
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", page)  # nothing external


def test_missing_image_shows_a_placeholder_and_images_load_once(
    analysis: Analysis, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real = report_html.load_image

    def fake_load(ref: str, base_dir: Path | None = None) -> Any:
        calls.append(ref)
        if "chelsea" in ref:
            raise ImageError(f"image file not found: {ref}")
        return real(ref, base_dir)

    monkeypatch.setattr(report_html, "load_image", fake_load)
    page = render_html([analysis])
    cats = [item for item in analysis.run.items.values() if "chelsea" in item.image]
    assert cats and page.count('class="thumb missing"') == len(cats)
    assert len(calls) == len({item.image for item in analysis.run.items.values()})
    assert page.count('<img class="thumb" src="data:image/jpeg;base64,') == len(
        analysis.run.items
    ) - len(cats)


@pytest.mark.slow
def test_large_report_renders_every_response(tmp_path: Path) -> None:
    """40 items × 6 conditions × 5 samples × 2 runs (its speed: benchmarks/report_speed.py)."""
    analyses = []
    for name, seed in (("a", 0), ("b", 1)):
        build_run(tmp_path / name, samples=5, seed=seed)
        analyses.append(analyse(load_run(tmp_path / name)))
    page = render_html(analyses)
    assert page.count('class="response"') == 2 * 700


# --- in the browser -----------------------------------------------------------------------------


class OpenedReport:
    def __init__(self, page: Any, blocked: list[str], requested: list[str], errors: list[str]):
        self.page = page
        self.blocked = blocked
        self.requested = requested
        self.errors = errors

    def text(self, selector: str) -> str:
        return str(self.page.inner_text(selector))


@pytest.fixture
def open_report(browser: Any, tmp_path: Path) -> Iterator[Any]:
    """Writes a rendered report to a file and opens it with every non-local request blocked."""
    pages: list[Any] = []

    def opener(analyses: list[Analysis]) -> OpenedReport:
        path = tmp_path / f"report-{len(pages)}.html"
        path.write_text(render_html(analyses), encoding="utf-8")
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        pages.append(page)
        blocked: list[str] = []
        requested: list[str] = []
        errors: list[str] = []

        def guard(route: Any) -> None:
            url = route.request.url
            if url.startswith(("file:", "data:")):
                route.continue_()
            else:
                blocked.append(url)
                route.abort()

        page.route("**/*", guard)
        page.on("request", lambda request: requested.append(request.url))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(path.as_uri())
        page.wait_for_load_state("load")
        return OpenedReport(page, blocked, requested, errors)

    yield opener
    for page in pages:
        page.close()


def assert_offline(report: OpenedReport) -> None:
    assert report.blocked == []
    assert [u for u in report.requested if not u.startswith("data:")] == [report.page.url]
    assert report.errors == []  # a CSP violation or script error would show here


def assert_tables(report: OpenedReport, analyses: list[Analysis]) -> None:
    table1, table2 = report.text("#table1"), report.text("#table2")
    for a in analyses:
        for cell in a.cells:
            if cell.model == "base" and cell.split == "train":
                assert cell.text() in table1, (cell.judge, cell.shots)
            if cell.shots == 0:
                assert cell.text() in table2, (cell.judge, cell.model, cell.split)
    reference = reference_for("base", "train", 0, "human", table=1)
    assert reference is not None
    assert f"paper (MAGMA): {reference.accuracy:.0%}" in table1
    assert "paper (MAGMA): 90%" in table1  # the classifier row beside `ethics`
    assert "paper (MAGMA): 60%" in table2  # Finetuned MAGMA, test
    legend = report.text("#paper-legend")
    assert "hand-evaluated" in legend and "RoBERTa-large classifier" in legend


@pytest.mark.browser
def test_single_run_report_in_the_browser(open_report: Any, analysis: Analysis) -> None:
    report = open_report([analysis])
    page = report.page
    assert_offline(report)
    assert_tables(report, [analysis])

    natural_width = page.eval_on_selector("#plot", "img => img.complete && img.naturalWidth")
    assert natural_width > 0

    cards = page.locator(".item-card")
    assert cards.count() == len(analysis.run.items) == 40
    ids = {cards.nth(i).get_attribute("data-item") for i in range(cards.count())}
    assert ids == set(analysis.run.items)

    card = page.locator('.item-card[data-item="cat-kick"]')
    assert "<b>cat-kick</b>" in card.inner_text()
    assert page.locator(".response b").count() == 0
    assert card.locator("img.thumb").evaluate("img => img.naturalWidth") > 0
    assert card.locator(".image-marker").first.is_visible()
    assert "[image]" in card.locator(".prompt").first.inner_text()
    responses = [g for g in analysis.run.generations if g.item_id == "cat-kick"]
    assert card.locator(".response").count() == len(responses)
    assert card.locator(".verdict").count() == len(responses) * len(analysis.run.judges)

    human = report.text("#human")
    assert analysis.annotators is not None
    assert "Krippendorff's alpha" in human
    assert decimal(analysis.annotators.krippendorff_alpha) in human
    for judge, agreement in analysis.judge_vs_human.items():
        assert f"{judge} {agreement.summary()}" in human

    comparisons = report.text("#comparisons")
    for comparison in analysis.comparisons:
        assert comparison.sentence() in comparisons
    significant = sum(1 for c in analysis.comparisons if c.significant)
    assert significant and page.locator("#comparisons tr.significant").count() == significant

    breakdowns = report.text("#breakdowns")
    assert "tag: trap" in breakdowns and "polarity: negative" in breakdowns

    # The inline filter script runs under the page's CSP.
    page.fill("#item-filter", "trap")
    traps = sum(1 for item in analysis.run.items.values() if "trap" in item.tags)
    assert page.locator(".item-card:visible").count() == traps
    assert f"{traps} of 40 items shown" in report.text("#item-count")


@pytest.mark.browser
def test_two_runs_side_by_side_in_the_browser(
    open_report: Any, analysis: Analysis, second_analysis: Analysis
) -> None:
    report = open_report([analysis, second_analysis])
    page = report.page
    assert_offline(report)
    assert_tables(report, [analysis, second_analysis])
    headers = page.locator("#table1 th.run").all_inner_texts()
    assert headers == ["run-a", "run-b"]
    assert page.locator("#table2 th.run").all_inner_texts() == ["run-a", "run-b"]
    assert page.eval_on_selector("#plot", "img => img.naturalWidth") > 0
    assert page.locator(".item-card").count() == 40
    card = page.locator('.item-card[data-item="cat-kick"]')
    assert card.locator(".item-run").count() == 2
    assert page.locator("#human .alpha").count() == 2
    assert "Cohen's kappa" in report.text("#human")
    assert page.locator(".response b").count() == 0
