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
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, installed or not

from cifar_utils import run_all as driver  # noqa: E402
from cifar_utils.costs import cpu_run_seconds  # noqa: E402
from cifar_utils.reference import ReferenceError, export_reference, load_reference  # noqa: E402


def profile_arguments(profile: dict) -> list[str]:
    """The ``run_all`` arguments that name the runs a profile.json's invocation trains."""
    argv = ["--profile", profile["profile"]] if profile.get("profile") not in (None, "reference") else []
    if profile.get("data") and profile["data"] != "keras.datasets download":
        argv += ["--data", profile["data"]]
    for flag, key in (("--epochs", "epochs"), ("--batch-size", "batch_size"), ("--subset", "subset")):
        if profile.get(key):
            argv += [flag, str(profile[key])]
    if profile.get("seeds"):
        argv += ["--seeds", ",".join(map(str, profile["seeds"]))]
    return argv


def progress(reference: Path, profile: dict) -> str:
    args = driver.parse_args(profile_arguments(profile))
    tasks = driver.training_tasks(args, driver.chapters(args.notebooks, []))
    held = {(r.experiment, r.variant or None, r.seed): r for r in load_reference(reference).records}
    missing = [t for t in tasks if (t.experiment, t.variant_label, t.seed) not in held]
    done = [held[key] for key in {(t.experiment, t.variant_label, t.seed) for t in tasks} if key in held]
    trained = sum(r.wall_seconds for r in done) / 3600
    remaining = sum(cpu_run_seconds(t) for t in missing) / 3600
    lines = [f"{reference}: {len(done)} of the profile's {len(tasks)} runs ({trained:.1f} h of training, "
             f"as recorded); {len(missing)} to go, about {remaining:.1f} CPU-hours by the cost table"]
    lines += [f"  missing: experiment {t.experiment}{f' ({t.variant_label})' if t.variant_label else ''} "
              f"seed {t.seed}" for t in missing]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="the output folder the runs were trained into (--out)")
    parser.add_argument("reference", type=Path, help="the reference folder, e.g. results/reference")
    args = parser.parse_args(argv)
    try:
        count = export_reference(args.out, args.reference)
    except ReferenceError as error:
        raise SystemExit(f"export_reference: {error}") from None
    print(f"exported {count} finished runs from {args.out} into {args.reference}")
    profile = json.loads((args.reference / "profile.json").read_text())
    print(progress(args.reference, profile))


if __name__ == "__main__":
    main()
