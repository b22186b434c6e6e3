"""One factory for synthetic run records (no training): every field a real record has."""

from cifar_utils.runs.record import RunRecord


def make_record(experiment: int, test_acc: float, seed: int = 0, *, train_acc: float | None = None,
                train_eval_acc: float | None = None, epochs: int = 30, batch_size: int = 512,
                train_size: int = 50_000, test_size: int = 10_000, status: str = "completed", variant: str = "",
                bn_reestimated_test_acc: float = float("nan"), wall_seconds: float = 30.0,
                history: dict | None = None, params: dict | None = None, name: str | None = None,
                best_test_acc: float | None = None, run_dir: str | None = None,
                data_source: str = "test") -> RunRecord:
    """A finished run; its train accuracies default to 5 points above ``test_acc``, its best
    test accuracy to ``test_acc``, its history to ``epochs`` epochs ending there. ``params``
    adds to (or replaces) the parameters every record has."""
    train_acc = test_acc + 5 if train_acc is None else train_acc
    train_eval_acc = train_acc if train_eval_acc is None else train_eval_acc
    if history is None:
        val = [test_acc / 100 - 0.01 * (epochs - 1 - i) for i in range(epochs)]
        history = {"epoch": list(range(epochs)), "loss": [1.0] * epochs, "val_loss": [1.2] * epochs,
                   "accuracy": [train_acc / 100] * epochs, "val_accuracy": val,
                   "epoch_seconds": [wall_seconds / epochs] * epochs}
    base = {"experiment": experiment, "variant": variant, "epochs": epochs, "batch_size": batch_size, "seed": seed,
            "eval_every": 1, "train_size": train_size, "validation_size": 0, "test_size": test_size,
            "data_fingerprint": "test"}
    name = f"exp {experiment}" if name is None else name
    best_test_acc = test_acc if best_test_acc is None else best_test_acc
    run_dir = f"runs/exp{experiment:02d}-seed{seed}-{variant}" if run_dir is None else run_dir
    return RunRecord(
        experiment=experiment, name=name, seed=seed, status=status, epochs_completed=len(history["epoch"]),
        train_loss=0.5, test_loss=0.7, train_acc=train_acc, test_acc=test_acc, best_test_acc=best_test_acc,
        best_epoch=len(history["epoch"]), param_count=1, wall_seconds=wall_seconds,
        seconds_per_epoch=wall_seconds / max(len(history["epoch"]), 1), images_per_second=5000.0,
        backend="tensorflow", device="CPU", data_source=data_source, versions={}, params={**base, **(params or {})},
        history=history, run_dir=run_dir, variant=variant, train_eval_acc=train_eval_acc, train_eval_loss=0.5,
        train_eval_images=2000, bn_reestimated_test_acc=bn_reestimated_test_acc)


def make_runs(experiment: int, accuracies, **kwargs) -> list[RunRecord]:
    """One run per accuracy, seeds 0, 1, 2, ..."""
    return [make_record(experiment, acc, seed=i, **kwargs) for i, acc in enumerate(accuracies)]
