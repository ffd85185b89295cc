"""report.md: the paper's tables with intervals, what is significant, humans, breakdowns."""

from __future__ import annotations

import json
from collections.abc import Sequence

from vlmalign.judges.validity import ValidityEntry
from vlmalign.report.across_runs import AcrossRuns, across_runs
from vlmalign.report.analysis import Analysis
from vlmalign.report.conditions import sorted_conditions
from vlmalign.report.formatting import (
    MISSING,
    NOT_INFORMATIVE,
    agreement_bias,
    agreement_kappa,
    decimal,
    judge_warning,
    rate,
)
from vlmalign.report.reference import PAPER, PAPER_LABEL
from vlmalign.report.tables import (
    COMPARISON_HEADER,
    LOSS_HEADER,
    PROFILE_HEADER,
    USAGE_HEADER,
    USAGE_NOTE,
    USAGE_TITLE,
    VALIDITY_HEADER,
    ResultTable,
    breakdown_tables,
    comparison_rows,
    find_cell,
    loss_rows,
    profile_rows,
    result_tables,
    usage_rows,
    validity_rows,
)
from vlmalign.report.texts import (
    cell_text,
    comparison_sentence,
    coverage_text,
    shared_items_sentence,
)
from vlmalign.schemas.results import CellRecord
from vlmalign.stats.calibrated import PAIRED_METHOD
from vlmalign.stats.minimums import MIN_LABELLED, TOO_FEW

INTERVALS_NOTE = (
    "Each cell is accuracy [95% interval] (n responses): a Wilson interval with one sample per "
    "prompt, a bootstrap over items with several (samples of one item are not independent). "
    "Automatic judges count an unclear verdict as not aligned; `human` is the majority of the "
    "annotators' latest labels, and leaves out unsure majorities, ties and unlabelled responses."
)
HUMAN_COVERAGE_NOTE = (
    "Responses labelled per condition (every human figure rests on these; with "
    "`vlmalign annotate --budget` they are a stratified sample):"
)
JUDGE_VS_HUMAN_NOTE = (
    "Each figure is given with its 95% interval [low, high]: a Wilson interval for the "
    "accuracy, a percentile bootstrap over the responses both decided for kappa and for the "
    "aligned-rate difference (> 0: the judge over-estimates alignment)."
)
PAPER_NOTE = (
    f"`{PAPER_LABEL}:` is the paper's own MAGMA result for that cell ({PAPER}, Tables 1 and 2; "
    "one sample per prompt, 30 train items), not this run: its hand-evaluated rows stand beside "
    "`human` and `stance`, its RoBERTa-large classifier row beside `ethics-roberta` and `ethics`."
)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A table without the columns that are missing ("–") in every row, nor the rows missing in
    every column but the first (their label): such a row or column says nothing."""
    keep = [j for j in range(len(header)) if not rows or any(r[j] != MISSING for r in rows)]
    shown = [[row[j] for j in keep] for row in rows if any(c != MISSING for c in row[1:])]
    lines = ["| " + " | ".join(header[j] for j in keep) + " |", "|" + "---|" * len(keep)]
    lines += ["| " + " | ".join(row) + " |" for row in shown]
    return "\n".join(lines)


def _result_table(table: ResultTable) -> str:
    """A paper table, each cell followed by the rate people would give and the paper's own
    number where they exist."""
    return markdown_table(table.header(), table.text_rows(paper=True))


def calibrated_note(cells: Sequence[CellRecord]) -> str:
    """One sentence on what "people: ..." means, with this run's label and response counts."""
    calibrated = [c.calibrated for c in cells if c.calibrated is not None]
    labels = max(c.n_labelled for c in calibrated)
    responses = max(c.n_labelled + c.n_unlabelled for c in calibrated)
    return (
        "`people:` is the rate people would give in that condition, estimated from its human "
        f"labels (up to {labels} per condition) and that judge's verdicts on all its responses "
        f"(up to {responses}): prediction-powered inference (PPI++), unbiased whatever the "
        "judge, with a 95% interval over items that is narrower than the labels' alone when the "
        f"judge agrees with people. With fewer than {MIN_LABELLED} labels it reads "
        f"“{TOO_FEW}” (docs/statistics.md)."
    )


def run_section(analysis: Analysis, level: str = "##") -> list[str]:
    runs, judges = [(analysis.run.name, analysis.cells)], analysis.judges
    tables = result_tables(runs, judges)
    parts = []
    for titled in tables:
        parts += [f"{level} {titled.title}", "", _result_table(titled.table), ""]
    parts += [INTERVALS_NOTE, ""]
    if any(titled.table.calibrated for titled in tables):
        parts += [calibrated_note(analysis.cells), ""]
    if analysis.paper:
        parts += [PAPER_NOTE, ""]
    parts += [
        f"{level} Judge validity",
        "",
        *validity_lines(analysis.validity),
        "",
        f"{level} Which differences are real",
        "",
    ]
    parts += _significance(analysis)
    if analysis.human:
        parts += ["", f"{level} Human evaluation", "", *_human(analysis)]
    if analysis.profiles:  # none when the run has no yes/no items
        parts += ["", f"{level} Answers by condition", "", *_profiles(analysis)]
    usage = _usage(analysis)
    if usage:  # none from an in-process model: it reports no tokens or refusals
        parts += ["", f"{level} {USAGE_TITLE}", "", *usage]
    parts += ["", f"{level} Breakdowns", "", *_breakdowns(analysis)]
    losses = loss_rows(analysis.run.epoch_losses)
    if losses:
        parts += ["", f"{level} Finetuning loss per epoch", ""]
        parts.append(markdown_table(LOSS_HEADER, losses))
    return parts


VALIDITY_NOTE = (
    "How far each judge can be trusted, measured in this run: on the dataset's reference answers "
    "(each item's ideal answer should be judged aligned, its misaligned answer not), against the "
    "human majority where people labelled responses, and on the judge's own held-out data. "
    "Balanced accuracy is the mean of the accuracies on the two sides (an unclear verdict is a "
    "miss on reference answers, and not aligned against people, as in the accuracies), with a "
    "95% interval over items; AUC is for graded judges. A judge is **informative** when its "
    "interval lies above 0.5 with at least 5 known answers on each side. Numbers of a judge "
    "that is not informative (by humans when the run has labels, else by reference answers) "
    f"are marked “⚠ {NOT_INFORMATIVE}”: read them as noise. Reference answers are cleaner "
    "than model output, so validity on them is an upper bound; people are the final word "
    "(docs/judge-validity.md). “(optimistic)”: this dataset informed the judge's "
    "development, so its figure here flatters it."
)


def validity_lines(entries: Sequence[ValidityEntry]) -> list[str]:
    if not entries:
        return ["No judge validity was measured for this run (no reference answers stored)."]
    return [VALIDITY_NOTE, "", markdown_table(VALIDITY_HEADER, validity_rows(entries))]


def _significance(analysis: Analysis) -> list[str]:
    if not analysis.comparisons:
        return ["No pair of conditions to compare."]
    significant = [c for c in analysis.comparisons if c.significant]
    lines = [
        "Paired tests on the same items (exact McNemar with one sample per prompt, a paired "
        "bootstrap over items with several); difference = second minus first condition; "
        "Holm's correction is over each judge's family of comparisons.",
        "",
    ]
    if any(c.calibrated for c in analysis.comparisons):
        lines[0] += (
            " Where both conditions have enough human labels, a judge's comparison is of the "
            "rates people would give (calibrated estimates, a t-test on a jackknife over items "
            f"paired across the two conditions: “{PAIRED_METHOD}”)."
        )
    if not significant:
        lines.append("**No difference is significant at 0.05.**")
    else:
        lines.append(f"**Significant at 0.05 ({len(significant)}):**")
        lines += [f"- {comparison_sentence(c)}" for c in significant]
    rest = [c for c in analysis.comparisons if not c.significant]
    if rest:
        lines += ["", "Not significant:"]
        lines += [f"- {comparison_sentence(c)}" for c in rest]
    return lines


# Characters that Markdown (CommonMark/GFM: emphasis, code, links, images, tables,
# strikethrough, math) reads as markup inside a line or a table cell (`#`, `-`, `+`, `.` only
# matter at the start of a line, where no name stands); `&`, `<`, `>` become entities so no
# HTML reaches the page.
_MARKDOWN_PUNCTUATION = frozenset("\\`*_{}[]()!|~$")
_HTML_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}


def _literal(name: str) -> str:
    """A name people typed (annotators, judges) as literal Markdown text.

    Markup characters are backslash-escaped, HTML characters become entities, and characters
    that are not printable (control and format characters, line separators) are shown as
    `\\uXXXX`, so a name can neither add markup nor break the line or the table.
    """
    out = []
    for char in name:
        if char in _HTML_ENTITIES:
            out.append(_HTML_ENTITIES[char])
        elif char in _MARKDOWN_PUNCTUATION:
            out.append("\\" + char)
        elif not char.isprintable():
            out.append(f"\\\\u{ord(char):04x}")
        else:
            out.append(char)
    return "".join(out)


def _human(analysis: Analysis) -> list[str]:
    agreement = analysis.annotators
    assert agreement is not None
    names = ", ".join(_literal(name) for name in agreement.annotators)
    lines = [
        f"{len(agreement.annotators)} annotator(s) ({names}) labelled "
        f"{agreement.labelled} responses, {agreement.overlapping} by at least two. "
        f"Cohen's kappa (two annotators): {decimal(agreement.cohen_kappa)}; "
        f"Krippendorff's alpha (nominal): {decimal(agreement.krippendorff_alpha)}.",
        "",
    ]
    statuses = [v.status for v in analysis.human.values()]
    ties, unsure = statuses.count("tie"), statuses.count("unsure")
    lines += [
        f"Human majority: {statuses.count('aligned')} aligned, {statuses.count('misaligned')} "
        f"misaligned, {unsure} unsure, {ties} ties (not guessed); "
        f"{len(analysis.run.generations) - len(statuses)} responses unlabelled.",
        "",
        HUMAN_COVERAGE_NOTE,
        "",
        *(f"- {coverage_text(coverage)}" for coverage in analysis.human_coverage),
        "",
    ]
    rows = []
    informative = analysis.informative
    for judge, result in analysis.judge_vs_human.items():
        c = result.confusion
        rows.append(
            [
                _literal(judge),
                str(result.n),
                rate(result.accuracy, result.accuracy_ci_low, result.accuracy_ci_high),
                agreement_kappa(result),
                f"{c['aligned']['aligned']} / {c['aligned']['misaligned']} / "
                f"{c['misaligned']['aligned']} / {c['misaligned']['misaligned']}",
                agreement_bias(result),
                result.summary() + judge_warning(informative.get(judge)),
            ]
        )
    header = [
        "judge",
        "n",
        "accuracy vs humans",
        "kappa",
        "judge A/human A, A/M, M/A, M/M",
        "aligned rate, judge − humans",
        "alignment estimate",
    ]
    return [*lines, markdown_table(header, rows), "", JUDGE_VS_HUMAN_NOTE]


def _profiles(analysis: Analysis) -> list[str]:
    rows = [
        [
            p.condition,
            p.yes_rate,
            p.unclear_rate,
            p.consistency,
            ", ".join(p.inconsistent_items[:8]) + (" …" if len(p.inconsistent_items) > 8 else ""),
        ]
        for p in profile_rows(analysis)
    ]
    note = (
        "From the stance judge, on the yes/no items: share of yes among yes/no answers whatever "
        "the aligned stance (a yes-bias shows as a rate far from the dataset's share of yes "
        "items), share of unclear answers, and how often an item's samples agree with its "
        "majority."
    )
    return [note, "", markdown_table(PROFILE_HEADER, rows)]


def _usage(analysis: Analysis) -> list[str]:
    """Responses, tokens and refusals per condition (nothing when the run has none of it)."""
    rows = usage_rows(analysis.usage)
    if not rows:
        return []
    # The model names are the endpoint's: literal text, like names people typed.
    rows = [[*row[:-1], _literal(row[-1])] for row in rows]
    return [markdown_table(USAGE_HEADER, rows), "", USAGE_NOTE]


def _breakdowns(analysis: Analysis) -> list[str]:
    lines = []
    for table in breakdown_tables(analysis):
        rows = [[group, *figures] for group, figures in table.rows]
        header = ["group", *table.conditions]
        lines += [f"Judge `{table.judge}`:", "", markdown_table(header, rows), ""]
    return lines


def side_by_side(analyses: Sequence[Analysis]) -> list[str]:
    """One row per judge and condition, one column per run."""
    judges = list(dict.fromkeys(j for a in analyses for j in a.judges))
    conditions = sorted_conditions(c.condition for a in analyses for c in a.cells)
    rows = []
    for judge in judges:
        for condition in conditions:
            row = [judge, condition.label]
            for analysis in analyses:
                cell = find_cell(analysis.cells, condition, judge)
                row.append(cell_text(cell) if cell else MISSING)
            rows.append(row)
    header = ["judge", "condition", *(a.run.name for a in analyses)]
    return [markdown_table(header, rows)]


def _header(analysis: Analysis) -> str:
    p = analysis.run.provenance
    return (
        f"Run `{analysis.run.name}`: model `{p.model}` on `{p.dataset}`, "
        f"{p.samples_per_prompt} sample(s) per prompt, prompt format "
        f"`{p.prompt_format}`, {len(analysis.run.generations)} responses."
    )


def across_section(across: AcrossRuns) -> list[str]:
    """The leaderboard and the paired tests between runs."""
    parts = [
        "## Leaderboard",
        "",
        "Each run's model under each judge, a column per condition (model variant in the row); "
        "`people:` where the run has human labels.",
        "",
        markdown_table(across.leaderboard.header(), across.leaderboard.text_rows()),
        "",
        "## Between runs",
        "",
        *(shared_items_sentence(s) for s in across.shared),
        "",
        "Paired tests of one condition in two runs, on the items both asked (exact McNemar with "
        "one sample per prompt, a paired bootstrap over items with several); difference = later "
        "run minus earlier one; Holm's correction is over each judge's between-run tests.",
        "",
    ]
    if not across.comparisons:
        return [*parts, "No condition is shared by two runs."]
    return [*parts, markdown_table(COMPARISON_HEADER, comparison_rows(across.comparisons))]


def render_markdown(analyses: Sequence[Analysis], across: AcrossRuns | None = None) -> str:
    parts = ["# vlmalign study report", ""]
    if len(analyses) == 1:
        parts += [_header(analyses[0]), "", *run_section(analyses[0])]
    else:
        parts += [*(_header(a) for a in analyses), ""]
        parts += across_section(across or across_runs(analyses))
        parts += ["", "## Side by side", ""]
        parts += side_by_side(analyses)
        for analysis in analyses:
            parts += ["", f"## Run `{analysis.run.name}`", "", *run_section(analysis, "###")]
    parts += ["", "## Provenance", ""]
    for analysis in analyses:
        parts += [
            f"Run `{analysis.run.name}`:",
            "",
            "```json",
            json.dumps(analysis.run.provenance.as_json(), indent=2),
            "```",
            "",
        ]
    return "\n".join(parts)
