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
interrupted execution from a finished one. An earlier chapter is kept only if the runs it
showed used this invocation's data (a file replaced at the same path has another data id),
and "this invocation" is the profile the driver hands over, not ``profile.json``, which
another invocation on the same output folder may have rewritten since.

The report folder is the reader's: a report writes ``index.html``, ``results.csv`` and
``figures/``, lists them in a manifest, and on the next build replaces or removes only
what that manifest lists; a folder holding anything else is refused (``folders``).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import pandas as pd

from .chapter import evaluation_phrase, results_marker
from .course import SUMMARY, chapter_number, numbers_settings
from .errors import ReportFolderError, RunError
from .folders import read_manifest, report_folder_problem, shown_path, write_manifest
from .runs.folder import RECORD_FILE
from .runs.record import RunRecord, record_paths
from .runs.reference import made_when, relative_run_dir
from .storage import ensure_space, is_disk_full, storage_error
from .summary import SUMMARY_MARKER

TEMPLATES = Path(__file__).with_name("templates")


@dataclass
class ChapterStatus:
    path: Path
    included: bool
    note: str
    figures: list[str] = field(default_factory=list)


def marker_path(out_dir: Path, stem: str) -> Path:
    name = SUMMARY_MARKER if stem == SUMMARY else results_marker(chapter_number(stem))
    return out_dir / "results" / name


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
    why = _changed_note(marker) or _other_data_note(marker, profile) or _settings_note(ran_with, expected)
    if why:
        return ChapterStatus(path, False, f"left out: {why}")
    when = nb.metadata.get("papermill", {}).get("end_time", "")[:16].replace("T", " ")
    return ChapterStatus(path, True, f"from an earlier invocation with the same settings ({when} UTC)", figures)


def _changed_note(marker: dict) -> str | None:
    changed = changed_runs(marker)
    if changed:
        return f"{len(changed)} of the runs it showed were retrained or removed since ({', '.join(changed[:3])})"
    return None


def _other_data_note(marker: dict, profile: dict) -> str | None:
    """An earlier chapter's runs on other data than this invocation's (same path, new file)."""
    now = profile.get("data_fingerprint")
    other = sorted(shown_data(marker) - {now}) if now else []
    return f"made with other data: data id {', '.join(other)} (now {now})" if other else None


def _settings_note(ran_with: dict, expected: dict) -> str | None:
    then, now = numbers_settings(ran_with), numbers_settings(expected)
    if then == now:
        return None
    differing = sorted(k for k in set(then) | set(now) if then.get(k) != now.get(k))
    return "made with other settings: " + ", ".join(f"{k} {then.get(k)!r} (now {now.get(k)!r})"
                                                    for k in differing[:4])


def changed_runs(marker: dict) -> list[str]:
    """The runs a finished chapter showed that are no longer on disk as they were."""
    folder = _runs_in(marker)
    return [name for name, digest in marker.get("runs", {}).items() if digest not in _current_digests(folder, name)]


def _runs_in(marker: dict) -> Path | None:
    """The folder a chapter read its runs from (None when its marker does not say)."""
    return Path(marker["runs_in"]) if marker.get("runs_in") else None


def shown_data(marker: dict) -> set[str]:
    """The data ids of the runs a finished chapter showed, as they are on disk now."""
    folder = _runs_in(marker)
    found = (_current_record(folder, name)[1] for name in marker.get("runs", {}))
    ids = (r.params.get("data_fingerprint") for r in found if r is not None and isinstance(r.params, dict))
    return {str(i) for i in ids if i}


def _current_record(folder: Path | None, name: str) -> tuple[Path | None, RunRecord | None]:
    """Where run ``name`` is under ``folder`` and its record (in a reference, the shallowest copy)."""
    if folder is None:
        return None, None
    path = folder / name / RECORD_FILE
    if not path.exists():
        nested = sorted((p for p in record_paths(folder) if p.parent.name == name), key=lambda p: (len(p.parts), p))
        path = nested[0] if nested else path
    try:
        return path, RunRecord.from_file(path)
    except RunError:
        return path, None


def _current_digests(folder: Path | None, name: str) -> set[str]:
    """The digests a chapter may have recorded for this run: as stored, and as a reference
    reads it (its ``run_dir`` relative to the reference, wherever the record says it was)."""
    path, record = _current_record(folder, name)
    if record is None:
        return set()
    digests = {record.digest()}
    record.run_dir = relative_run_dir(path, folder.parent)
    return digests | {record.digest()}


def _banner(profile: dict) -> str:
    data = profile.get("data") or "?"
    where = f"data {data}, Keras backend {_backends(profile)}, on {profile.get('device')}"
    if profile.get("profile") == "quick":
        return (f"QUICK PROFILE: {profile.get('epochs')} epochs on the bundled sample ({where}). "
                "A smoke test of the pipeline: these are not the study's numbers.")
    if profile.get("profile") == "reference":
        return _reference_banner(profile, where)
    epochs = profile.get("epochs") or "the study's 300"
    batch = profile.get("batch_size") or "the study's 512"
    name = {"laptop": "Laptop profile (a short setting of its own, not the study's length)",
            "cpu": f"CPU profile ({epochs} of the study's 300 epochs on the full data)"}.get(
        profile.get("profile"), "Full profile")
    return (f"{name}: the study's recipe at epochs {epochs}, batch {batch} (chapter 6's own recipes at theirs), "
            f"seeds {profile.get('seeds')}, "
            f"{evaluation_phrase(profile.get('eval_every', 1))}; {where}; "
            f"speed settings: {profile.get('speed', 'Keras defaults')}; "
            f"{_made_by(profile)}started {profile.get('started')}.")


def _backends(profile: dict) -> str:
    """This invocation's backend, and the runs' where they differ: a run is reused (or read
    from a reference) whichever backend made it, and the banner must not claim otherwise."""
    runs = [b for b in profile.get("run_backends") or [] if b]
    if not runs or runs == [profile.get("backend")]:
        return str(profile.get("backend"))
    return f"{profile.get('backend')} for this invocation (the runs shown were trained with {', '.join(runs)})"


def run_backends(out_dir: Path) -> list[str]:
    """The backends the summary's table says its runs were trained with."""
    results = out_dir / "results" / "results.csv"
    try:
        column = pd.read_csv(results)["backend"].dropna()
    except (OSError, KeyError, ValueError, pd.errors.ParserError):
        return []
    return sorted({b.strip() for cell in column for b in str(cell).split(";") if b.strip()})


def _made_by(profile: dict) -> str:
    """The CPU and the package commit, where the profile names them."""
    parts = [f"CPU {profile['cpu']}" if profile.get("cpu") else "",
             f"package {profile['package_version']} at commit {profile['commit']}"
             + (" with uncommitted changes" if profile.get("dirty") else "") if profile.get("commit") else ""]
    return "".join(f"{part}; " for part in parts if part)


def _reference_banner(profile: dict, where: str) -> str:
    """What the reference is, as its own profile says: an empty one claims no numbers, a
    partial one says which chapters it does not hold yet."""
    reference, runs = shown_path(profile.get("reference")), profile.get("reference_runs")
    if runs == 0:
        return (f"The reference folder {reference} holds no runs: this report shows no results, only the chapters' "
                f"text and example figures ({where}).")
    made = profile.get("reference_made") or {}
    made_by = {"full": "one full run of the course",
               "cpu": _cpu_reference(made),
               "quick": "a --quick run, a smoke test of the pipeline: not the study's numbers"}.get(
        profile.get("reference_profile"), "a run whose profile the reference does not record")
    count = f"{runs} runs of " if runs else ""
    progress = f" It holds {made['progress']}." if made.get("progress") else ""
    return (f"Reference results from {reference} ({count}{made_by}): the numbers, curves and verdicts rendered "
            f"without training ({where} for the example figures).{progress}")


def _cpu_reference(made: dict) -> str:
    """'the CPU profile: 30 of the study's 300 epochs on the full data, seeds [0], ...'."""
    pieces = [p for p in made.get("pieces") or [] if isinstance(p, dict)]
    commits = ", ".join(dict.fromkeys(f"{p['commit']}{' with uncommitted changes' if p.get('dirty') else ''}"
                                      for p in pieces if p.get("commit"))) or "not recorded"
    when = made_when(made)
    return (f"the CPU profile: {made.get('epochs')} of the study's 300 epochs on the full data "
            f"(chapter 6's recipes at their own), seeds {made.get('seeds')}; trained with "
            f"{', '.join(made.get('backends') or ['?'])} on {made.get('device')} (CPU {made.get('cpu')}), "
            f"in {len(pieces) or 1} piece(s), commits {commits}, {when}; trained at low priority beside other "
            f"work, so its seconds per epoch are not benchmarks (docs/benchmarks.md holds those)")


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


def build_report(out_dir: str | os.PathLike, report_dir: str | os.PathLike, profile: dict | None = None) -> Path:
    """Write ``report_dir/index.html``, ``results.csv`` and ``figures/``; return the index path.

    ``profile`` is this invocation's (``./run_all.sh`` hands it over); without it,
    ``out_dir/profile.json``. A report folder holding files no report wrote is refused
    before anything is written (``ReportFolderError``); only files an earlier report
    listed in the folder's manifest are ever replaced or removed."""
    from nbconvert import HTMLExporter

    out_dir, report_dir = Path(out_dir).resolve(), Path(report_dir).resolve()
    problem = report_folder_problem(report_dir, out_dir)
    if problem:
        raise ReportFolderError(f"{report_dir}: {problem}")
    executed = sorted((out_dir / "notebooks").glob("*.ipynb"))
    if not executed:
        raise FileNotFoundError(f"{out_dir / 'notebooks'}: no executed notebooks to build a report from")
    executed.sort(key=lambda p: (p.stem != SUMMARY, p.stem))
    if profile is None:
        profile_path = out_dir / "profile.json"
        profile = json.loads(profile_path.read_text()) if profile_path.exists() else {}
    profile = {**profile, "run_backends": run_backends(out_dir)}
    statuses = [chapter_status(path, out_dir, profile) for path in executed]
    exporter = HTMLExporter(template_name="report", extra_template_basedirs=[str(TEMPLATES)],
                            exclude_input=True, exclude_input_prompt=True,
                            exclude_output_prompt=True, embed_images=True)
    body, _ = exporter.from_notebook_node(merged_notebook(statuses, profile))
    copies = _report_copies(out_dir, statuses)
    _write_report_files(report_dir, f"<!-- {_banner(profile)} -->\n" + body, copies)
    return report_dir / "index.html"


def _report_copies(out_dir: Path, statuses: list[ChapterStatus]) -> dict[str, Path]:
    """What goes beside the index: the summary's table if the summary is in, and the
    figures of the chapters that are (relative name in the report -> source file)."""
    copies: dict[str, Path] = {}
    results = out_dir / "results" / "results.csv"
    if results.exists() and any(s.included and s.path.stem == SUMMARY for s in statuses):
        copies["results.csv"] = results
    for name in sorted({f for s in statuses if s.included for f in s.figures}):
        if (out_dir / "figures" / name).exists():
            copies[f"figures/{name}"] = out_dir / "figures" / name
    return copies


def _write_report_files(report_dir: Path, html: str, copies: dict[str, Path]) -> None:
    """Write the report whole or not at all, then remove what an earlier report wrote that
    this one does not hold. Every new file goes to a temp file first and replaces the old
    one only when all are written; the manifest lists the temp files meanwhile, so a crash
    leaves nothing that a later report would take for a reader's (it removes them). A full
    disk is named as for a run (``RunStorageError``), and the temp files are removed."""
    earlier = read_manifest(report_dir)
    now = {"index.html", *copies}
    temps = {name: _temp_name(name) for name in now}
    needed = len(html.encode()) + sum(source.stat().st_size for source in copies.values())
    try:
        (report_dir / "figures").mkdir(parents=True, exist_ok=True)
        ensure_space(report_dir, needed + 1e5, "the report")
        write_manifest(report_dir, earlier | now | set(temps.values()))
        (report_dir / temps["index.html"]).write_text(html, encoding="utf-8")
        for name, source in copies.items():
            shutil.copyfile(source, report_dir / temps[name])
    except BaseException as error:
        _remove_temps(report_dir, temps.values(), earlier)
        if isinstance(error, OSError) and is_disk_full(error):
            raise storage_error(report_dir, "the report", needed, error) from None
        raise
    for name, temp in temps.items():
        os.replace(report_dir / temp, report_dir / name)
    for name in sorted(earlier - now):
        (report_dir / name).unlink(missing_ok=True)
    write_manifest(report_dir, now)


def _temp_name(name: str) -> str:
    """``figures/a.png`` -> ``figures/.a.png.tmp``; the index's is ``.index.html.tmp``."""
    folder, _, file = name.rpartition("/")
    return f"{folder}/.{file}.tmp" if folder else f".{file}.tmp"


def _remove_temps(report_dir: Path, temps, earlier: set[str]) -> None:
    """After a failed write: no temp file stays, and the manifest lists what it listed."""
    for temp in temps:
        (report_dir / temp).unlink(missing_ok=True)
    if report_dir.is_dir() and read_manifest(report_dir) != earlier:
        try:
            write_manifest(report_dir, earlier)
        except OSError:
            pass  # it lists the removed temp files too, which a later report removes again
