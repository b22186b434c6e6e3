"""A reference run retrained with its recorded settings and seed gives the same numbers.

Experiment 2 of the committed CPU reference is retrained for its first epochs only: with a
constant learning rate, batches and random draws that depend on (seed, epoch) alone
(``cifar_utils.batches``) and no dropout or batch norm, the first epochs of a 30-epoch run
are the same computation as a run of that many epochs, so their test accuracies must agree.
On the machine and backend that made the record they agree exactly; another CPU may round
differently, so the check allows three binomial standard errors of the 10,000-image test set.
"""

import math
import os
from pathlib import Path

import pytest

from cifar_utils import load_cifar10
from cifar_utils.runs.identity import data_fingerprint
from cifar_utils.runs.reference import load_reference
from cifar_utils.runs.train import run_experiment

ROOT = Path(__file__).resolve().parents[1]
SOURCE = os.environ.get("CIFAR10_SOURCE")
EPOCHS = 3


@pytest.mark.slow
@pytest.mark.skipif(not SOURCE, reason="needs the full JPEG copy of CIFAR-10 (CI sets CIFAR10_SOURCE)")
def test_experiment_2_retrained_matches_the_reference_epoch_by_epoch(tmp_path):
    records = load_reference(ROOT / "results" / "reference").of(2)
    if not records:
        pytest.skip("the committed reference holds no run of experiment 2 yet")
    reference = records[0]
    data = load_cifar10(SOURCE)
    if data_fingerprint(data) != reference.params["data_fingerprint"]:
        pytest.skip(f"{SOURCE} is not the data the reference was made on")
    again = run_experiment(2, epochs=EPOCHS, seed=reference.seed, data=data, out_dir=tmp_path,
                           batch_size=reference.params["batch_size"])
    theirs = [100 * a for a in reference.history["val_accuracy"][:EPOCHS]]
    ours = [100 * a for a in again.history["val_accuracy"]]
    assert len(ours) == EPOCHS
    for epoch, (mine, recorded) in enumerate(zip(ours, theirs, strict=True), start=1):
        tolerance = 3 * 100 * math.sqrt(recorded / 100 * (1 - recorded / 100) / reference.params["test_size"])
        assert abs(mine - recorded) <= tolerance, f"epoch {epoch}: {mine:.2f} % against the record's {recorded:.2f} %"
