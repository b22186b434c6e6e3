"""One self-contained HTML report from the executed notebooks, summary first.

nbconvert does the conversion (code hidden, figures already embedded as base64); this
module decides what the report may hold, merges those chapters into one notebook with a
banner and a contents list, and copies ``results.csv`` and their figures beside
``index.html`` for the slides.

What it may hold: a chapter executed to its end in this invocation, or in an earlier one
with the same settings whose runs are still on disk unchanged (said so, with its date). A
chapter made with other settings, one whose runs were retrained or removed since, or one
that never reached its last cell, is left out and named in the banner, and so are its
figures. "Reached its last cell" is read from the chapter's own results file, which
carries the token of the execution that wrote it: papermill's metadata cannot tell an
interrupted execution from a finished one.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from .chapter import results_marker
from .course import SUMMARY, chapter_number
from .summary import SUMMARY_MARKER
from .training import RECORD_FILE, RunError, RunRecord, evaluation_phrase

TEMPLATES = Path(__file__).with_name("templates")
# Parameters that change how a chapter runs or prints, never its numbers.
PRESENTATION_ONLY = {"run_token", "log_every", "speed", "out_dir", "train"}


@dataclass
class ChapterStatus:
    path: Path
    included: bool
    note: str
    figures: list[str] = field(default_factory=list)


def marker_path(out_dir: Path, stem: str) -> Path:
    name = SUMMARY_MARKER if stem == SUMMARY else results_marker(chapter_number(stem))
    return out_dir / "results" / name


def _numbers_settings(parameters: dict) -> dict:
    return {k: v for k, v in parameters.items() if k not in PRESENTATION_ONLY}


def chapter_status(path: Path, out_dir: Path, profile: dict) -> ChapterStatus:
    """May this executed notebook go into this invocation's report, and what to say about it."""
    nb = nbformat.read(path, as_version=4)
    ran_with = dict(nb.metadata.get("papermill", {}).get("parameters", {}))
    token = ran_with.get("run_token")
    marker_file = marker_path(out_dir, path.stem)
    try:
        marker = json.loads(marker_file.read_text()) if marker_file.exists() else {}
    except (OSError, json.JSONDecodeError):
        marker = {}
    finished = bool(token) and marker.get("run_token") == token
    this_invocation = token == profile.get("run_token")
    if not finished:
        if this_invocation:
            return ChapterStatus(path, True, "FAILED in this invocation: shown up to the error")
        return ChapterStatus(path, False, "left out: its last execution did not finish (interrupted or failed)")
    figures = list(marker.get("figures", []))
    if this_invocation:
        return ChapterStatus(path, True, "ran in this invocation", figures)
    expected = profile.get("parameters", {}).get(path.stem)
    if expected is None:
        return ChapterStatus(path, False, "left out: not part of this course's notebooks now")
    changed = changed_runs(marker)
    if changed:
        return ChapterStatus(path, False, f"left out: {len(changed)} of the runs it showed were retrained or removed "
                                          f"since ({', '.join(changed[:3])})")
    then, now = _numbers_settings(ran_with), _numbers_settings(expected)
    if then != now:
        differing = sorted(k for k in set(then) | set(now) if then.get(k) != now.get(k))
        detail = ", ".join(f"{k} {then.get(k)!r} (now {now.get(k)!r})" for k in differing[:4])
        return ChapterStatus(path, False, f"left out: made with other settings: {detail}")
    when = nb.metadata.get("papermill", {}).get("end_time", "")[:16].replace("T", " ")
    return ChapterStatus(path, True, f"from an earlier invocation with the same settings ({when} UTC)", figures)


def changed_runs(marker: dict) -> list[str]:
    """The runs a finished chapter showed that are no longer on disk as they were."""
    folder = Path(marker.get("runs_in", ""))
    changed = []
    for name, digest in marker.get("runs", {}).items():
        try:
            current = RunRecord.from_file(folder / name / RECORD_FILE).digest()
        except RunError:
            current = None
        if current != digest:
            changed.append(name)
    return changed


def _banner(profile: dict) -> str:
    data = profile.get("data") or "?"
    where = f"data {data}, Keras backend {profile.get('backend')}, on {profile.get('device')}"
    if profile.get("profile") == "quick":
        return (f"QUICK PROFILE: {profile.get('epochs')} epochs on the bundled sample ({where}). "
                "A smoke test of the pipeline: these are not the study's numbers.")
    if profile.get("profile") == "reference":
        return (f"Reference results from {profile.get('reference')}: the numbers, curves and verdicts of one "
                f"full run of the course, rendered without training ({where} for the example figures).")
    epochs = profile.get("epochs") or "each recipe's (the study's 300)"
    batch = profile.get("batch_size") or "each recipe's (the study's 512)"
    return (f"Full profile: epochs {epochs}, batch {batch}, seeds {profile.get('seeds')}, "
            f"{evaluation_phrase(profile.get('eval_every', 1))}; {where}; "
            f"speed settings: {profile.get('speed', 'Keras defaults')}; started {profile.get('started')}.")


def _slides_only(cell) -> bool:
    """Keep markdown and cells with outputs worth reading; drop logs and empty code cells."""
    if cell.cell_type == "markdown":
        return True
    if cell.cell_type != "code":
        return False
    cell.outputs = [o for o in cell.outputs if o.output_type in ("display_data", "execute_result", "error")]
    return bool(cell.outputs)


def merged_notebook(statuses: list[ChapterStatus], profile: dict) -> nbformat.NotebookNode:
    merged = nbformat.v4.new_notebook()
    titles = []
    for status in (s for s in statuses if s.included):
        nb = nbformat.read(status.path, as_version=4)
        anchor = f"chapter-{status.path.stem[:2]}"
        title = next((c.source.splitlines()[0].lstrip("# ") for c in nb.cells if c.cell_type == "markdown"),
                     status.path.stem)
        titles.append((anchor, title, status.note))
        merged.cells.append(nbformat.v4.new_markdown_cell(f'<a id="{anchor}"></a>'))
        if status.note.startswith("FAILED"):
            merged.cells.append(nbformat.v4.new_markdown_cell(
                f"**This chapter FAILED in this invocation; it is shown up to the error.** "
                f"(`{status.path.name}`; see its log.)"))
        for cell in nb.cells:
            if _slides_only(cell):
                if cell.cell_type == "markdown":  # the Colab badge is a remote image: not in an offline report
                    cell.source = "\n".join(line for line in cell.source.splitlines() if "colab-badge" not in line)
                merged.cells.append(cell)
    contents = "\n".join(f"{i + 1}. [{title}](#{anchor}): {note}" for i, (anchor, title, note) in enumerate(titles))
    left_out = [f"- `{s.path.stem}`: {s.note}" for s in statuses if not s.included]
    left_text = ("\n\n**Not in this report:**\n\n" + "\n".join(left_out)) if left_out else ""
    merged.cells.insert(0, nbformat.v4.new_markdown_cell(
        f"# CIFAR-10 with simple CNNs: the study, reproduced and judged\n\n"
        f"**{_banner(profile)}**\n\n## Contents\n\n{contents}{left_text}"))
    merged.metadata["title"] = "CIFAR-10 with simple CNNs: report"
    return merged


def build_report(out_dir: str | os.PathLike, report_dir: str | os.PathLike) -> Path:
    """Write ``report_dir/index.html``, ``results.csv`` and ``figures/``; return the index path."""
    from nbconvert import HTMLExporter

    out_dir, report_dir = Path(out_dir), Path(report_dir)
    executed = sorted((out_dir / "notebooks").glob("*.ipynb"))
    if not executed:
        raise FileNotFoundError(f"{out_dir / 'notebooks'}: no executed notebooks to build a report from")
    executed.sort(key=lambda p: (p.stem != SUMMARY, p.stem))
    profile_path = out_dir / "profile.json"
    profile = json.loads(profile_path.read_text()) if profile_path.exists() else {}
    statuses = [chapter_status(path, out_dir, profile) for path in executed]
    exporter = HTMLExporter(template_name="report", extra_template_basedirs=[str(TEMPLATES)],
                            exclude_input=True, exclude_input_prompt=True,
                            exclude_output_prompt=True, embed_images=True)
    body, _ = exporter.from_notebook_node(merged_notebook(statuses, profile))
    report_dir.mkdir(parents=True, exist_ok=True)
    first_line = f"<!-- {_banner(profile)} -->\n"
    index = report_dir / "index.html"
    tmp = index.with_name(".index.html.tmp")
    tmp.write_text(first_line + body, encoding="utf-8")
    os.replace(tmp, index)
    results = out_dir / "results" / "results.csv"
    summary_included = any(s.included and s.path.stem == SUMMARY for s in statuses)
    (report_dir / "results.csv").unlink(missing_ok=True)
    if results.exists() and summary_included:
        shutil.copyfile(results, report_dir / "results.csv")
    figures = report_dir / "figures"
    if figures.exists():
        shutil.rmtree(figures)
    figures.mkdir()
    for name in sorted({f for s in statuses if s.included for f in s.figures}):
        source = out_dir / "figures" / name
        if source.exists():
            shutil.copyfile(source, figures / name)
    return index
