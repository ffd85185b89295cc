"""`report`, `annotate`, `labels` and `store check`: what is done with a run directory."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from vlmalign.cli.apps import app, labels_app, store_app
from vlmalign.cli.console import err, out, print_warning
from vlmalign.cli.studies import print_across, print_tables, print_validity
from vlmalign.errors import VlmalignError, shown_path, utf8_name_problem


@app.command()
def report(
    run_dirs: Annotated[list[Path], typer.Argument(help="one or more run directories")],
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="where to write (default: the run directory, or ./report)"),
    ] = None,
    paper: Annotated[
        bool,
        typer.Option(
            "--paper/--no-paper",
            help="show the paper's own MAGMA numbers where they apply (builtin:moral-vqa-40 "
            "with the paper's conditions)",
        ),
    ] = True,
) -> None:
    """Rebuild report.md, report.html, results.json and CSVs from run directories' stores."""
    from vlmalign.atomic import remove_leftovers
    from vlmalign.report import formatting
    from vlmalign.report.build import HTML_FILE, REPORT_FILE, build_report
    from vlmalign.report.texts import comparison_sentence

    target = out_dir or (run_dirs[0] if len(run_dirs) == 1 else Path("report"))
    for run_dir in run_dirs:  # reports name each run by its folder, in UTF-8 files
        if problem := utf8_name_problem(run_dir.name or run_dir, "the run directory's name"):
            raise VlmalignError(problem)
        warn_missing_images(run_dir)
        if run_dir.is_dir():
            remove_leftovers(run_dir)  # of an earlier report killed mid-write
    analyses = build_report(run_dirs, target, paper=paper)
    if len(analyses) > 1:  # the runs side by side once; each run's own tables are in the files
        from vlmalign.report.across_runs import across_runs

        print_across(across_runs(analyses))
    for analysis in analyses:
        if len(analyses) > 1:
            out.print(f"[bold]{analysis.run.name}[/bold]")
        else:
            print_tables(analysis.cells, analysis.run.provenance, analysis.usage)
        print_validity(analysis.validity)
        for comparison in analysis.comparisons:
            if comparison.significant:
                out.print(f"significant: {comparison_sentence(comparison)}")
        if analysis.human:
            coverage = analysis.human_coverage
            per_condition = ", ".join(
                f"{c.condition.label} {c.labelled} of {c.responses}" for c in coverage
            )
            out.print(
                f"humans labelled {sum(c.labelled for c in coverage)} of "
                f"{sum(c.responses for c in coverage)} responses ({per_condition})",
                soft_wrap=True,
                markup=False,
            )
        informative = analysis.informative
        for judge, a in analysis.judge_vs_human.items():
            agrees = formatting.rate(a.accuracy, a.accuracy_ci_low, a.accuracy_ci_high)
            kappa, bias = formatting.agreement_kappa(a), formatting.agreement_bias(a)
            warning = formatting.judge_warning(informative.get(judge))
            out.print(
                f"{judge} vs humans (95% intervals): agrees {agrees}, kappa {kappa}, "
                f"aligned rate {bias}; {a.summary()}{warning}",
                soft_wrap=True,
                markup=False,
            )
    out.print(
        f"wrote {shown_path(target / REPORT_FILE)}, {shown_path(target / HTML_FILE)}, "
        "results.json and CSVs",
        markup=False,
        soft_wrap=True,
    )


# --- human evaluation -----------------------------------------------------------------------
def existing_run(run_dir: Path) -> Path:
    """`run_dir` if it holds a store (else one line), cleared of what killed writers left."""
    from vlmalign.atomic import remove_leftovers
    from vlmalign.store import STORE_FILE

    if not (run_dir / STORE_FILE).is_file():
        raise VlmalignError(
            f"{shown_path(run_dir)}: no {STORE_FILE} here; run `vlmalign study` first"
        )
    remove_leftovers(run_dir)  # of a report (or export) killed mid-write
    return run_dir


def warn_missing_images(run_dir: Path) -> None:
    """One warning line when the folder the run recorded for its dataset does not hold the
    items' image files: a run recorded before folders were stored absolute keeps `.`, taken from
    where this command runs, and a dataset may have moved since. `report` would then show no
    thumbnails and `annotate` serve no image. A store that cannot be read is left to the
    command itself to report."""
    from vlmalign.data.images import missing_files
    from vlmalign.store import RunStore
    from vlmalign.store.runs import RunTables

    try:
        with RunStore(run_dir, read_only=True) as store:
            newest = RunTables(store.db).newest_dataset()
    except VlmalignError:
        return
    if newest is None:
        return
    folder, items = newest
    missing = missing_files((item.image for item in items), folder)
    if not missing:
        return
    run, example = shown_path(run_dir), shown_path(repr(missing[0]))
    counted = f"{run}: the image files of {len(missing)} of {len(items)} items are not found"
    if folder.is_absolute():
        print_warning(
            f"{counted} in the run's image folder {shown_path(folder)} (e.g. {example}): moved "
            "or deleted? They will be missing from what this command shows"
        )
    else:
        print_warning(
            f"{counted} (e.g. {example}): the run recorded its image folder as "
            f"{shown_path(folder)}, relative to where the study ran, and from "
            f"{shown_path(Path.cwd())} it does not hold them; run this command from the folder "
            "the study ran in"
        )


LOOPBACK = ("127.0.0.1", "localhost", "::1")


@app.command()
def annotate(
    run_dir: Annotated[Path, typer.Argument(help="run directory of a study")],
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
    host: Annotated[str, typer.Option(help="address to bind (loopback by default)")] = "127.0.0.1",
    token: Annotated[
        str | None,
        typer.Option(
            help="shared access token annotators must enter, on loopback (at least 16 "
            "characters, or `auto` to generate one); off loopback use --annotators"
        ),
    ] = None,
    annotators: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help="the annotators who may sign in, one name a line: each gets a token of their "
            "own, printed once (needed off loopback)",
        ),
    ] = None,
    new_tokens: Annotated[
        bool,
        typer.Option(
            "--new-tokens",
            help="issue new tokens to every --annotators name (the earlier ones stop working)",
        ),
    ] = False,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            help="also serve requests for this host name (repeatable; loopback names and a "
            "non-wildcard --host are always allowed)"
        ),
    ] = None,
    overlap: Annotated[
        int | None, typer.Option(min=1, help="offer each response until K annotators labelled it")
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(help="derive each annotator's order (and the --budget sample) from this seed"),
    ] = None,
    budget: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="offer only N responses: a seeded sample spread evenly over conditions and items",
        ),
    ] = None,
    guidelines: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help="this study's annotation guidelines, a UTF-8 Markdown or text file shown as "
            "plain text (default: the built-in guidelines)",
        ),
    ] = None,
    header_timeout: Annotated[
        float,
        typer.Option(
            metavar="SECONDS",
            help="close a connection that has not sent a request's complete headers this long "
            "after it opened or after its last response",
        ),
    ] = 10.0,
    body_timeout: Annotated[
        float,
        typer.Option(
            metavar="SECONDS",
            help="close a connection whose request body is not in this long after its headers, "
            "or that reads none of a stalled response for this long",
        ),
    ] = 30.0,
    keep_alive: Annotated[
        int,
        typer.Option(
            metavar="SECONDS",
            help="close a kept-alive connection idle this long (at most --header-timeout)",
        ),
    ] = 5,
    max_connections: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="open connections at most (default: what the open-file limit allows, up to "
            "4096); beyond it, the one waiting longest for its request is closed",
        ),
    ] = None,
    trusted_proxy: Annotated[
        list[str] | None,
        typer.Option(
            metavar="ADDRESS",
            help="honour X-Forwarded-For/-Proto only from this reverse proxy's IP address or "
            "network (repeatable; by default they are ignored)",
        ),
    ] = None,
) -> None:
    """Serve the labelling app: annotators label responses blind, one at a time."""
    import re
    import secrets

    from vlmalign.annotate.app import create_app, guidelines_problem
    from vlmalign.annotate.security import WILDCARD_HOSTS, host_name, token_problem
    from vlmalign.annotate.server import serve, server_settings

    served = server_settings(
        header_timeout=header_timeout,
        body_timeout=body_timeout,
        keep_alive=keep_alive,
        max_connections=max_connections,
        trusted_proxies=trusted_proxy or [],
    )
    existing_run(run_dir)
    warn_missing_images(run_dir)
    guidelines_text = None
    if guidelines is not None:
        if not guidelines.is_file():
            raise VlmalignError(f"--guidelines {guidelines}: the file does not exist")
        try:
            guidelines_text = guidelines.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as exc:
            raise VlmalignError(
                f"--guidelines {guidelines}: not UTF-8 text (byte {exc.start}); save it as UTF-8"
            ) from exc
        except OSError as exc:
            raise VlmalignError(f"--guidelines {guidelines}: {exc.strerror or exc}") from exc
        if problem := guidelines_problem(guidelines_text):
            raise VlmalignError(f"--guidelines {guidelines}: {problem}")
    if annotators is not None and token is not None:
        raise VlmalignError(
            "--token with --annotators: each annotator signs in with their own token; drop --token"
        )
    if new_tokens and annotators is None:
        raise VlmalignError("--new-tokens renews the tokens of --annotators FILE; pass it too")
    if host not in LOOPBACK and annotators is None:
        raise VlmalignError(
            f"--host {host} lets other machines reach the app; pass --annotators FILE (one "
            "name a line) so that each annotator signs in with a token of their own"
        )
    if token == "auto":
        token = secrets.token_urlsafe(24)
        out.print(f"access token (annotators enter it to sign in): {token}", markup=False)
    elif token is not None and (problem := token_problem(token)):
        raise VlmalignError(problem)
    extra = allowed_host or []
    for name in extra:
        if not host_name(name) or re.search(r"[^a-z0-9.:\-]", host_name(name)):
            raise VlmalignError(f"--allowed-host {name!r}: not a host name or IP address")
    tokens = None
    if annotators is not None:
        from vlmalign.annotate.credentials import issue_tokens, read_names

        issued = issue_tokens(run_dir, read_names(annotators), renew=new_tokens)
        tokens = issued.tokens
        if issued.new:  # shown now or never: only their hashes are kept
            out.print(
                f"tokens of {len(issued.new)} annotators (each signs in with their name and "
                "own token); they are not shown again, so hand them out now:",
                markup=False,
                soft_wrap=True,
            )
            width = max(len(name) for name in issued.new)
            for name, new in issued.new.items():
                out.print(f"  {name:<{width}}  {new}", markup=False, soft_wrap=True)
        if issued.kept:
            out.print(
                f"{len(issued.kept)} annotators keep the tokens they were given before "
                f"({', '.join(issued.kept)}); --new-tokens issues new ones",
                markup=False,
                soft_wrap=True,
            )
    web = create_app(
        run_dir,
        token=token,
        overlap=overlap,
        seed=seed,
        budget=budget,
        host=host,
        extra_hosts=extra,
        guidelines=guidelines_text,
        annotators=tokens,
    )
    state = web.state.vlmalign
    offered, responses = len(state.queue.keys), state.responses
    scope = ""
    if budget is not None and budget < responses:
        scope = f" (a stratified sample of {responses}; --budget {budget})"
    elif budget is not None:
        scope = f" (all of them: --budget {budget} is not below the run's {responses})"
    wildcard = host.strip() in WILDCARD_HOSTS
    shown = "127.0.0.1" if wildcard else f"[{host}]" if ":" in host else host
    out.print(
        f"{offered} responses to label{scope}; open http://{shown}:{port}/ (Ctrl+C stops)",
        soft_wrap=True,
    )
    if wildcard and not extra:
        out.print(
            f"--host {host} listens on every address, but only loopback names are served; "
            "add --allowed-host NAME for each name or address annotators open",
            soft_wrap=True,
        )
    serve(web, host=host, port=port, settings=served)


@labels_app.command("export")
def labels_export(
    run_dir: Annotated[Path, typer.Argument(help="run directory")],
    csv_format: Annotated[  # CSV is the only format; the flag stays accepted for old scripts
        bool, typer.Option("--csv", hidden=True)
    ] = True,
    output: Annotated[Path | None, typer.Option(help="file to write (default: stdout)")] = None,
    all_revisions: Annotated[
        bool, typer.Option(help="every revision, not only each annotator's latest label")
    ] = False,
) -> None:
    """Write human labels as UTF-8 CSV, with each response's condition.

    Every cell is quoted; a cell a spreadsheet would run as a formula gets a leading `'`,
    which `labels import` removes again.
    """
    import io

    from vlmalign.labels import export_csv
    from vlmalign.store import RunStore

    with RunStore(existing_run(run_dir), read_only=True) as store:
        if output is None:
            # UTF-8 and no newline translation whatever the console's locale: the bytes are
            # those `--output` writes, so `> labels.csv` re-imports.
            sys.stdout.flush()
            stream = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", newline="")
            try:
                export_csv(store, stream, all_revisions)
            finally:
                stream.flush()
                stream.detach()
            return
        from vlmalign.atomic import atomic_write

        try:  # whole or not at all: nothing half-written is left behind
            with atomic_write(output, newline="") as handle:
                count = export_csv(store, handle, all_revisions)
        except OSError as exc:
            raise VlmalignError(
                f"{shown_path(output)}: cannot write ({exc.strerror}); choose another --output"
            ) from exc
    err.print(f"wrote {count} labels to {shown_path(output)}", soft_wrap=True, markup=False)


@labels_app.command("plan")
def labels_plan(
    run_dir: Annotated[Path, typer.Argument(help="run directory")],
    width: Annotated[
        float,
        typer.Option(
            "--width",
            min=0.001,
            max=0.5,
            help="half-width of the 95% interval wanted for each calibrated estimate",
        ),
    ] = 0.10,
    judges: Annotated[
        list[str] | None,
        typer.Option("--judge", help="plan for this judge only (repeatable; default: all)"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="write the plan as JSON")] = False,
) -> None:
    """How many human labels each condition needs for a calibrated estimate of given precision."""
    from vlmalign.report.labelling_plan import labelling_plan

    plan = labelling_plan(existing_run(run_dir), width, judges or [])
    if as_json:
        sys.stdout.write(plan.model_dump_json(indent=2) + "\n")
        return
    from vlmalign.cli.console import table

    header = ["condition", "judge", "labelled", "needed", "more", "half-width now", "basis"]
    rows = [
        [
            r.condition,
            r.judge,
            f"{r.labelled} of {r.responses}",
            str(r.needed) + ("" if r.reachable else " (more than there are: add items)"),
            str(r.more),
            "–" if r.half_width_now is None else f"±{r.half_width_now:.1%}",
            r.basis,
        ]
        for r in plan.plan
    ]
    out.print(table(f"Labels for a 95% interval of ±{width:.0%}", header, rows))
    out.print(
        "Label a random sample of each condition's responses (`vlmalign annotate RUN --budget "
        "N` samples across conditions); the plan is recomputed from the labels as they come.",
        markup=False,
        soft_wrap=True,
    )


@labels_app.command("import")
def labels_import(
    run_dir: Annotated[Path, typer.Argument(help="run directory")],
    file: Annotated[Path, typer.Argument(help="CSV with generation_key, annotator, label[, note]")],
) -> None:
    """Add labels made elsewhere (validated; all rows or none)."""
    from vlmalign.labels import import_csv
    from vlmalign.store import RunStore

    with RunStore(existing_run(run_dir)) as store:
        result = import_csv(store, file)
    repeated = f", {result.repeated} repeated rows of the file" if result.repeated else ""
    out.print(
        f"imported {result.imported} labels ({result.already_present} already present{repeated})"
    )


# --- run stores -----------------------------------------------------------------------------
@store_app.command("check")
def store_check(
    run_dir: Annotated[Path, typer.Argument(help="run directory (holds study.sqlite)")],
) -> None:
    """Check a run's store: SQLite integrity, foreign keys, duplicate and orphan rows, unfinished
    runs. Exit 0 when clean, 1 with the list of problems, 2 when it is not a usable store."""
    from vlmalign.store import STORE_FILE
    from vlmalign.store.check import check_store, summary

    problems = check_store(run_dir)
    store = shown_path(run_dir / STORE_FILE)
    if not problems:
        print(f"{store}: ok ({summary(run_dir)})")
        return
    print(f"{store}: {len(problems)} problems")
    for problem in problems:
        print(f"  {problem}")
    raise typer.Exit(1)
