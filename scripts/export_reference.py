"""Export the finished runs of an output folder into a reference, and say how far it is.

    python scripts/export_reference.py ~/cifar-reference results/reference

Adds the runs finished so far to the reference (``export_reference``: checked first, the
folder swapped in whole, runs already there kept), then lists which runs of the output
folder's profile (its ``profile.json``) the reference holds and which are still missing,
with the training time of those in and, from ``cifar_utils.costs``, an estimate of the CPU
time the rest needs. A reference is trained in pieces (README, "The CPU profile"): run
this before stopping, commit the folder, and the next piece resumes where this one ended.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, installed or not

from cifar_utils.costs import cpu_run_seconds  # noqa: E402
from cifar_utils.errors import ReferenceFolderError  # noqa: E402
from cifar_utils.run_profile import reference_progress  # noqa: E402
from cifar_utils.runs.reference import export_reference, load_reference  # noqa: E402
from cifar_utils.runs.reference_progress import progress_sentence  # noqa: E402


def progress(reference: Path) -> str:
    """The reference against its profile: what it holds, by chapter, and what is missing."""
    found = reference_progress(load_reference(reference))
    if found is None:
        return f"{reference}: its profile.json does not say which runs make it complete"
    trained = sum(r.wall_seconds for r in found.held) / 3600
    remaining = sum(cpu_run_seconds(t) for t in found.missing) / 3600
    lines = [f"{reference}: {progress_sentence(found)} ({trained:.1f} h of training, as recorded); "
             f"{len(found.missing)} to go, about {remaining:.1f} CPU-hours by the cost table"]
    lines += [f"  missing: {t.label}" for t in found.missing]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="the output folder the runs were trained into (--out)")
    parser.add_argument("reference", type=Path, help="the reference folder, e.g. results/reference")
    args = parser.parse_args(argv)
    try:
        count = export_reference(args.out, args.reference)
    except ReferenceFolderError as error:
        raise SystemExit(f"export_reference: {error}") from None
    print(f"exported {count} finished runs from {args.out} into {args.reference}")
    print(progress(args.reference))


if __name__ == "__main__":
    main()
