"""The README's first screen is generated from the committed reference and cannot drift."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import readme_results  # noqa: E402

from cifar_utils.runs.reference import load_reference  # noqa: E402
from tests.factories import make_record  # noqa: E402


@pytest.mark.slow
def test_the_readme_block_is_what_the_committed_reference_gives():
    done = subprocess.run([sys.executable, "scripts/readme_results.py", "--check"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_block_shows_the_study_next_to_ours_and_what_is_not_trained(tmp_path):
    reference = load_reference(ROOT / "results" / "reference")
    reference.records = [make_record(1, 58.0), make_record(21, 90.0, seed=0), make_record(21, 91.0, seed=1)]
    block = readme_results.results_block(reference, figure=False)
    rows = [line for line in block.splitlines() if line.startswith("| ")]
    assert len(rows) == 1 + 17 + 2  # header, the study's 17, chapter 6's two
    assert rows[1].startswith("| 1. ") and "| 63.00 | 58.00 | -5.00 |" in rows[1]
    assert "not trained yet" in rows[2] and "90.50 ± 0.71 (2 seeds)" in rows[-1]
    assert "![" not in block


def test_a_readme_without_one_block_is_refused():
    with pytest.raises(SystemExit, match="needs exactly one"):
        readme_results.replace_block("no markers here", "block")


def test_the_committed_report_is_built_from_the_committed_reference():
    index = ROOT / "report" / "index.html"
    assert index.exists(), "report/index.html: rebuild it with ./run_all.sh --reference results/reference"
    banner = index.read_text(encoding="utf-8").split("\n", 1)[0]
    held = len(load_reference(ROOT / "results" / "reference").records)
    assert banner.startswith("<!-- Reference results from results/reference (") and f"({held} runs of " in banner, \
        "report/index.html was built from another state of results/reference: rebuild it"
