"""The self-contained HTML report: the plot, the escaping, the tables and the rendered page in
headless Chromium with every network request blocked.

Figures are checked on a known analysis: a synthetic run whose results are replaced by
hand-written ones, so every expected string below is written out by hand."""

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
from vlmalign.judges.validity import ValidityEntry
from vlmalign.report import item_cards as report_cards
from vlmalign.report.analysis import Analysis, analyse
from vlmalign.report.conditions import ConditionKey
from vlmalign.report.html import render_html
from vlmalign.report.item_cards import prompt_markup
from vlmalign.report.markdown import render_markdown
from vlmalign.report.plot import accuracy_png
from vlmalign.report.reference import reference_for
from vlmalign.report.run_data import load_run
from vlmalign.schemas.results import BreakdownRecord, CellRecord, ComparisonRecord, ProfileRecord

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
BASE_0 = ConditionKey("base", "train", 0)
BASE_1 = ConditionKey("base", "train", 1)


@pytest.fixture
def analysis(synthetic_run: Path) -> Analysis:
    return analyse(load_run(synthetic_run))


@pytest.fixture
def second_analysis(second_run: Path) -> Analysis:
    return analyse(load_run(second_run))


def cell(
    judge: str, condition: tuple[str, str, int], accuracy: float | None, **fields: Any
) -> CellRecord:
    """A cell of 30 responses, one per item, with nothing left out (`fields` change any of it)."""
    model, split, shots = condition
    low, high = (None, None) if accuracy is None else (accuracy - 0.1, min(1.0, accuracy + 0.1))
    values: dict[str, Any] = dict(
        model=model,
        split=split,
        shots=shots,
        judge=judge,
        accuracy=accuracy,
        n=30,
        aligned=0,
        unclear=0,
        items=30,
        samples_per_prompt=1,
        ci_low=low,
        ci_high=high,
        ci_method="wilson",
        unlabelled=0,
        paper_magma_accuracy=None,
        run="",
        judge_informative=None,
        calibrated=None,
    )
    return CellRecord(**(values | fields))


def make_cell(judge: str, model: str, split: str, shots: int, accuracy: float | None) -> CellRecord:
    return cell(judge, (model, split, shots), accuracy, run="r")


# --- a known analysis ---------------------------------------------------------------------------


def known_cell(
    judge: str,
    condition: tuple[str, str, int],
    accuracy: float,
    interval: tuple[float, float],
    n: int,
    **extra: Any,
) -> CellRecord:
    low, high = interval
    paper = reference_for(*condition, judge)  # an analysis of the paper's own design
    return cell(
        judge,
        condition,
        accuracy,
        n=n,
        aligned=round(accuracy * n),
        items=n,
        ci_low=low,
        ci_high=high,
        paper_magma_accuracy=paper.accuracy if paper else None,
        **extra,
    )


KNOWN_CELLS = [
    known_cell("stance", BASE_0, 0.5, (0.4, 0.6), 30, unclear=3),
    known_cell("stance", BASE_1, 0.7, (0.55, 0.82), 30),
    known_cell("stance", ("finetuned", "test", 0), 0.6, (0.45, 0.74), 10),
    known_cell("ethics", BASE_0, 0.9, (0.8, 0.96), 30, judge_informative=False),
    known_cell("human", BASE_0, 0.55, (0.3, 0.77), 10, unclear=2, unlabelled=18),
]
KNOWN_COMPARISON = ComparisonRecord(
    judge="stance",
    a=BASE_0,
    b=BASE_1,
    accuracy_a=0.5,
    accuracy_b=0.7,
    difference=0.2,
    ci_low=0.04,
    ci_high=0.35,
    p_value=0.012,
    p_holm=0.036,
    method="mcnemar-exact",
    n_items=30,
    run="",
    judge_informative=None,
    calibrated=False,
    significant=True,
)
KNOWN_SENTENCE = (
    "stance: base 1-shot train vs base 0-shot train: +20% [+4%, +35%], p = 0.012, significant "
    "at 0.05 (also after Holm's correction) (mcnemar-exact, 30 items)"
)
KNOWN_VALIDITY = ValidityEntry(
    judge="stance",
    source="references",
    n=80,
    balanced_accuracy=0.71,
    ci_low=0.62,
    ci_high=0.8,
    auc=None,
    aligned_accuracy=0.9,
    misaligned_accuracy=0.52,
    unclear=3,
    informative=True,
)


@pytest.fixture
def known(analysis: Analysis) -> Analysis:
    return replace(
        analysis,
        cells=KNOWN_CELLS,
        comparisons=[KNOWN_COMPARISON],
        breakdowns=[
            BreakdownRecord(
                judge="stance",
                condition=BASE_0,
                group="tag: trap",
                accuracy=0.25,
                n=8,
                ci_low=0.07,
                ci_high=0.59,
                run="",
                items=8,
                judge_informative=None,
            )
        ],
        profiles=[
            ProfileRecord(
                condition=BASE_0,
                yes_rate=0.6,
                yes_ci_low=0.45,
                yes_ci_high=0.73,
                unclear_rate=0.1,
                consistency=0.85,
                inconsistent_items=["cat-kick", "dog-walk"],
                run="",
            )
        ],
        validity=[KNOWN_VALIDITY],
    )


def table_rows(page: str, opening: str) -> list[list[str]]:
    """The body rows of the first table whose opening tag holds `opening`, as cell texts."""
    start = page.index(opening)
    body = page[page.index("<tbody>", start) : page.index("</tbody>", start)]
    rows = []
    for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.DOTALL):
        cells = re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.DOTALL)
        rows.append([" ".join(html.unescape(re.sub(r"<[^>]+>", "", c)).split()) for c in cells])
    return rows


STANCE_0 = "50% [40%–60%] (n=30)"
ETHICS_0 = "90% [80%–96%] (n=30) ⚠ judge not informative"
HUMAN_0 = "55% [30%–77%] (n=10)"
FINETUNED_TEST = "60% [45%–74%] (n=10)"


def test_the_papers_tables_in_html(known: Analysis) -> None:
    page = render_html([known])
    # Rows follow the run's judges (recorded by name), then `human`; the run has no 2-shot
    # responses, and neither ethics nor humans read a finetuned one: no such column or row.
    assert table_rows(page, 'id="table1"') == [
        ["ethics", f"{ETHICS_0} paper (MAGMA): 90%", "–"],
        [
            "stance",
            f"{STANCE_0} 3 unclear paper (MAGMA): 56%",
            "70% [55%–82%] (n=30) paper (MAGMA): 67%",
        ],
        ["human", f"{HUMAN_0} 2 unsure/tie, 18 unlabelled paper (MAGMA): 56%", "–"],
    ]
    assert table_rows(page, 'id="table2"') == [
        ["ethics", "base", ETHICS_0, "–"],  # Table 2 of the paper has no classifier row
        ["stance", "base", f"{STANCE_0} 3 unclear paper (MAGMA): 56%", "–"],
        ["stance", "finetuned", "–", f"{FINETUNED_TEST} paper (MAGMA): 60%"],
        ["human", "base", f"{HUMAN_0} 2 unsure/tie, 18 unlabelled paper (MAGMA): 56%", "–"],
    ]


def test_the_papers_tables_in_markdown_are_the_same_rows(known: Analysis) -> None:
    lines = render_markdown([known]).splitlines()
    table1 = [
        "| judge | 0-shot train | 1-shot train |",
        "|---|---|---|",
        f"| ethics | {ETHICS_0}; paper (MAGMA): 90% | – |",
        f"| stance | {STANCE_0}; paper (MAGMA): 56% | 70% [55%–82%] (n=30); paper (MAGMA): 67% |",
        f"| human | {HUMAN_0}; paper (MAGMA): 56% | – |",
    ]
    start = lines.index(table1[0])
    assert lines[start : start + len(table1)] == table1
    assert f"| stance | finetuned | – | {FINETUNED_TEST}; paper (MAGMA): 60% |" in lines
    assert f"| ethics | base | {ETHICS_0} | – |" in lines


def test_comparisons_validity_breakdowns_and_profiles_in_both(known: Analysis) -> None:
    page = render_html([known])
    assert table_rows(page, 'class="comparisons"') == [
        [
            "stance",
            "base 1-shot train vs base 0-shot train",
            "70% vs 50%",
            "+20% [+4%, +35%]",
            "0.012",
            "0.036",
            "mcnemar-exact",
            "30",
            "★ significant",
        ]
    ]
    assert KNOWN_SENTENCE not in html.unescape(page)  # the table says it, once
    validity = ["stance", "references", "80", "0.71 [0.62, 0.80]", "–", "90%", "52%", "3", "yes"]
    assert table_rows(page, 'class="validity"') == [validity]
    assert table_rows(page, 'class="breakdown"') == [["tag: trap", "25% [7%–59%] (n=8)"]]
    profile = ["base 0-shot train", "60% [45%–73%]", "10%", "85%", "cat-kick, dog-walk"]
    assert table_rows(page, 'class="profiles"') == [profile]

    lines = render_markdown([known]).splitlines()
    assert f"- {KNOWN_SENTENCE}" in lines
    no_auc = [value for index, value in enumerate(validity) if index != 4]  # no graded judge
    assert "| " + " | ".join(no_auc) + " |" in lines
    assert (
        "| group | base 0-shot train |" in lines and "| tag: trap | 25% [7%–59%] (n=8) |" in lines
    )
    assert "| " + " | ".join(profile) + " |" in lines


def test_each_verdict_shows_what_the_judge_read_and_why(analysis: Analysis) -> None:
    page = html.unescape(render_html([analysis]))
    # The synthetic run's stance verdicts read "yes", "no" or "unclear" and explain it in a
    # sentence; its ethics verdicts carry only a score of 0.5.
    answers = [row.answer for row in analysis.run.verdicts["stance"].values()]
    for stance in ("yes", "no", "unclear"):
        assert page.count(f'title="The answer says {stance}."') == answers.count(stance)
        assert page.count(f"(reads {stance})") == answers.count(stance)
    assert page.count("(score 0.50)") == len(analysis.run.verdicts["ethics"])


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
    real = report_cards.load_image

    def fake_load(ref: str, base_dir: Path | None = None) -> Any:
        calls.append(ref)
        if "chelsea" in ref:
            raise ImageError(f"image file not found: {ref}")
        return real(ref, base_dir)

    monkeypatch.setattr(report_cards, "load_image", fake_load)
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


def assert_tables(report: OpenedReport) -> None:
    """The known analysis's figures, as a reader sees them."""
    table1, table2 = report.text("#table1"), report.text("#table2")
    for figure in (
        STANCE_0,
        "3 unclear",
        "paper (MAGMA): 56%",  # the paper's hand-evaluated 0-shot train
        "70% [55%–82%] (n=30)",
        "paper (MAGMA): 67%",
        ETHICS_0,
        "paper (MAGMA): 90%",  # the paper's classifier row beside `ethics`
        "2 unsure/tie, 18 unlabelled",
    ):
        assert figure in table1, figure
    assert FINETUNED_TEST in table2 and "paper (MAGMA): 60%" in table2
    legend = report.text("#paper-legend")
    assert "hand-evaluated" in legend and "RoBERTa-large classifier" in legend


@pytest.mark.browser
def test_single_run_report_in_the_browser(open_report: Any, known: Analysis) -> None:
    report = open_report([known])
    page = report.page
    assert_offline(report)
    assert_tables(report)

    natural_width = page.eval_on_selector("#plot", "img => img.complete && img.naturalWidth")
    assert natural_width > 0

    cards = page.locator(".item-card")
    assert cards.count() == len(known.run.items) == 40
    ids = {cards.nth(i).get_attribute("data-item") for i in range(cards.count())}
    assert ids == set(known.run.items)

    card = page.locator('.item-card[data-item="cat-kick"]')
    assert "<b>cat-kick</b>" in card.inner_text()
    assert page.locator(".response b").count() == 0
    assert card.locator("img.thumb").evaluate("img => img.naturalWidth") > 0
    assert card.locator(".image-marker").first.is_visible()
    assert "[image]" in card.locator(".prompt").first.inner_text()
    responses = [g for g in known.run.generations if g.item_id == "cat-kick"]
    assert card.locator(".response").count() == len(responses)
    assert card.locator(".verdict").count() == len(responses) * len(known.run.judges)

    human = report.text("#human")
    assert "Krippendorff's alpha" in human
    assert all(f"{name} (" in human for name in ("ana", "ben", "cy"))  # the run's annotators

    comparisons = report.text("#comparisons")
    assert (
        "base 1-shot train vs base 0-shot train" in comparisons and "★ significant" in comparisons
    )
    assert page.locator("#comparisons tr.significant").count() == 1

    breakdowns = report.text("#breakdowns")
    assert "tag: trap" in breakdowns and "25% [7%–59%] (n=8)" in breakdowns

    # The inline filter script runs under the page's CSP.
    page.fill("#item-filter", "trap")
    traps = sum(1 for item in known.run.items.values() if "trap" in item.tags)
    assert page.locator(".item-card:visible").count() == traps
    assert f"{traps} of 40 items shown" in report.text("#item-count")


@pytest.mark.browser
def test_two_runs_side_by_side_in_the_browser(
    open_report: Any, known: Analysis, second_analysis: Analysis
) -> None:
    report = open_report([known, replace(second_analysis, cells=KNOWN_CELLS)])
    page = report.page
    assert_offline(report)
    assert_tables(report)
    headers = page.locator("#table1 th.run").all_inner_texts()
    assert headers == ["run-a", "run-b"]
    assert page.locator("#table2 th.run").all_inner_texts() == ["run-a", "run-b"]
    assert report.text("#table1").count(STANCE_0) == 2  # once per run
    assert page.eval_on_selector("#plot", "img => img.naturalWidth") > 0
    assert page.locator(".item-card").count() == 40
    card = page.locator('.item-card[data-item="cat-kick"]')
    assert card.locator(".item-run").count() == 2
    assert page.locator("#human .alpha").count() == 2
    assert "Cohen's kappa" in report.text("#human")
    assert page.locator(".response b").count() == 0
