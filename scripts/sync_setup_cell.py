"""Write the one set-up cell (``cifar_utils.colab.SETUP_CELL``) and Colab's GPU metadata into
every chapter notebook, so the six copies cannot drift apart (tests/test_colab.py checks them).

    python scripts/sync_setup_cell.py           # rewrite the notebooks that differ
    python scripts/sync_setup_cell.py --check   # only name them (exit status 1 if any)

Only each notebook's first code cell and its metadata change, and the JSON is written the way
Jupyter (nbformat) writes it: indent 1, sorted keys, UTF-8 as is, a trailing newline. So the
diff of a change is the change. The first code cell is left stripped (no outputs).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cifar_utils.colab import NOTEBOOK_METADATA, SETUP_CELL

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def notebook_text(nb: dict) -> str:
    """A notebook's file text, as nbformat writes it (so Jupyter's saves and ours agree)."""
    return json.dumps(nb, indent=1, ensure_ascii=False, sort_keys=True) + "\n"


def synced(nb: dict) -> dict:
    """``nb`` with the set-up cell as its first code cell and Colab's GPU metadata merged in."""
    cell = next(c for c in nb["cells"] if c["cell_type"] == "code")
    cell.update(source=SETUP_CELL.splitlines(keepends=True), outputs=[], execution_count=None)
    metadata = nb["metadata"]
    for key, value in NOTEBOOK_METADATA.items():  # Colab may add keys of its own under "colab": keep them
        metadata[key] = {**metadata.get(key, {}), **value} if isinstance(value, dict) else value
    return nb


def sync(path: Path, check: bool = False) -> bool:
    """Whether ``path`` differed from the synced notebook; rewrites it unless ``check``."""
    text = path.read_text(encoding="utf-8")
    wanted = notebook_text(synced(json.loads(text)))
    if wanted != text and not check:
        path.write_text(wanted, encoding="utf-8")
    return wanted != text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report notebooks that differ")
    args = parser.parse_args(argv)
    changed = [path.name for path in sorted(NOTEBOOKS.glob("0*.ipynb")) if sync(path, args.check)]
    verb = "differ" if args.check else "rewritten"
    print(f"{len(changed)} notebook(s) {verb}" + (f": {', '.join(changed)}" if changed else ""))
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    sys.exit(main())
