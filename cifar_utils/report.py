"""One self-contained HTML report from the executed notebooks, summary first.

nbconvert does the conversion (code hidden, figures already embedded as base64); this
module only merges the chapters into one notebook with a banner and a contents list, and
copies ``results.csv`` and the figures beside ``index.html`` for the slides.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import nbformat

from .training import evaluation_phrase

TEMPLATES = Path(__file__).with_name("templates")
ORDER_FIRST = "05_summary"


def _banner(profile: dict) -> str:
    data = profile.get("data") or "?"
    where = f"data {data}, Keras backend {profile.get('backend')}, on {profile.get('device')}"
    if profile.get("profile") == "quick":
        return (f"QUICK PROFILE: {profile.get('epochs')} epochs on the bundled sample ({where}). "
                "A smoke test of the pipeline: these are not the study's numbers.")
    return (f"Full profile: {profile.get('epochs')} epochs, batch {profile.get('batch_size')}, "
            f"seeds {profile.get('seeds')}, {evaluation_phrase(profile.get('eval_every', 1))}; {where}; "
            f"speed settings: {profile.get('speed', 'Keras defaults')}; started {profile.get('started')}.")


def _slides_only(cell) -> bool:
    """Keep markdown and cells with outputs worth reading; drop logs and empty code cells."""
    if cell.cell_type == "markdown":
        return True
    if cell.cell_type != "code":
        return False
    cell.outputs = [o for o in cell.outputs if o.output_type in ("display_data", "execute_result", "error")]
    return bool(cell.outputs)


def merged_notebook(notebooks: list[Path], profile: dict) -> nbformat.NotebookNode:
    merged = nbformat.v4.new_notebook()
    titles = []
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        anchor = f"chapter-{path.stem[:2]}"
        title = next((c.source.splitlines()[0].lstrip("# ") for c in nb.cells if c.cell_type == "markdown"),
                     path.stem)
        titles.append((anchor, title))
        merged.cells.append(nbformat.v4.new_markdown_cell(f'<a id="{anchor}"></a>'))
        for cell in nb.cells:
            if _slides_only(cell):
                if cell.cell_type == "markdown":  # the Colab badge is a remote image: not in an offline report
                    cell.source = "\n".join(line for line in cell.source.splitlines() if "colab-badge" not in line)
                merged.cells.append(cell)
    contents = "\n".join(f"{i + 1}. [{title}](#{anchor})" for i, (anchor, title) in enumerate(titles))
    merged.cells.insert(0, nbformat.v4.new_markdown_cell(
        f"# CIFAR-10 with simple CNNs: the study, reproduced and judged\n\n"
        f"**{_banner(profile)}**\n\n## Contents\n\n{contents}"))
    merged.metadata["title"] = "CIFAR-10 with simple CNNs: report"
    return merged


def build_report(out_dir: str | os.PathLike, report_dir: str | os.PathLike) -> Path:
    """Write ``report_dir/index.html``, ``results.csv`` and ``figures/``; return the index path."""
    from nbconvert import HTMLExporter

    out_dir, report_dir = Path(out_dir), Path(report_dir)
    executed = sorted((out_dir / "notebooks").glob("*.ipynb"))
    if not executed:
        raise FileNotFoundError(f"{out_dir / 'notebooks'}: no executed notebooks to build a report from")
    executed.sort(key=lambda p: (p.stem != ORDER_FIRST, p.stem))
    profile_path = out_dir / "profile.json"
    profile = json.loads(profile_path.read_text()) if profile_path.exists() else {}
    exporter = HTMLExporter(template_name="report", extra_template_basedirs=[str(TEMPLATES)],
                            exclude_input=True, exclude_input_prompt=True,
                            exclude_output_prompt=True, embed_images=True)
    body, _ = exporter.from_notebook_node(merged_notebook(executed, profile))
    report_dir.mkdir(parents=True, exist_ok=True)
    first_line = f"<!-- {_banner(profile)} -->\n"
    index = report_dir / "index.html"
    tmp = index.with_name(".index.html.tmp")
    tmp.write_text(first_line + body, encoding="utf-8")
    os.replace(tmp, index)
    results = out_dir / "results" / "results.csv"
    if results.exists():
        shutil.copyfile(results, report_dir / "results.csv")
    figures = report_dir / "figures"
    if figures.exists():
        shutil.rmtree(figures)
    figures.mkdir()
    for figure in sorted((out_dir / "figures").glob("*.png")):
        shutil.copyfile(figure, figures / figure.name)
    return index
