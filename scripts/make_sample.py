"""Rebuild cifar_utils/sample/cifar10_sample.npz from the shared JPEG pack.

The sample is the first 200 train and 50 test images of each class in the pack's
(already shuffled) order: 2,000 / 500 real CIFAR-10 images, kept as their JPEG bytes
(quality 75, as in the pack) so the file stays small.

    python scripts/make_sample.py [--pack ../shared/data/cifar10-jpeg-pack.npz]
"""

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout, installed or not

from cifar_utils.storage import write_atomic  # noqa: E402

PER_CLASS = {"train": 200, "test": 50}


def pick(labels: np.ndarray, per_class: int) -> np.ndarray:
    chosen = [np.flatnonzero(labels == c)[:per_class] for c in range(10)]
    return np.sort(np.concatenate(chosen))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pack", default=ROOT.parent / "shared" / "data" / "cifar10-jpeg-pack.npz")
    parser.add_argument("--out", default=ROOT / "cifar_utils" / "sample" / "cifar10_sample.npz")
    args = parser.parse_args()
    pack = np.load(args.pack)
    arrays = {"jpeg_header": pack["jpeg_header"], "class_names": pack["class_names"]}
    for split, per_class in PER_CLASS.items():
        scans, offsets, labels = pack[f"{split}_scans"], pack[f"{split}_offsets"], pack[f"{split}_labels"]
        keep = pick(labels, per_class)
        pieces = [scans[offsets[i]:offsets[i + 1]] for i in keep]
        arrays[f"{split}_scans"] = np.concatenate(pieces)
        arrays[f"{split}_offsets"] = np.concatenate([[0], np.cumsum([len(p) for p in pieces])]).astype(np.int64)
        arrays[f"{split}_labels"] = labels[keep]
    write_atomic(args.out, lambda stream: np.savez_compressed(stream, **arrays))
    print(f"wrote {args.out} ({Path(args.out).stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
