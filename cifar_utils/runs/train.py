"""Train one experiment by its recipe, or reuse or resume it, and keep its record.

Everything that could leave a wrong number behind is checked when a run is touched: a
second process waits for the owner instead of training the same run (``lock``), a damaged
record is rebuilt from the history and the final weights, a damaged checkpoint gives way to
an older one, a history that lost rows is never paired with a later checkpoint, and a full
disk stops the run with one message naming the folder while the finished epochs stay. The
only module of ``runs`` besides ``callbacks`` that imports Keras.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from .. import backend
from ..batches import EpochDraws, fit_data
from ..data import load_cifar10
from ..errors import RunError
from ..experiments import Experiment, get_experiment
from ..final_model import batch_norm_layers, reestimate_batch_norm, restore_batch_norm
from ..models import build_model, compile_model, prepare_model
from ..parameters import check_seeds
from ..recipes import evaluate_views, predict_each_view, scores, steps_per_epoch
from ..speed import Speed
from ..storage import write_atomic
from . import progress
from .callbacks import Checkpointer, EpochTimer, HistoryWriter, ProgressLogger, save_weights
from .folder import (
    DEFAULT_OUT_DIR,
    HISTORY_FILE,
    PARAMS_FILE,
    RECORD_FILE,
    WEIGHTS_FILE,
    checkpoint_epoch,
    checkpoints,
    clean_leftovers,
    clear,
    remove_scaffolding,
    set_aside,
)
from .history import read_history, truncate_history
from .identity import RunPlan, evaluation_epochs, plan_run
from .lock import run_lock
from .predictions import write_predictions
from .record import RunRecord
from .settings import RunSettings
from .source import source_identity


def run_experiment(experiment: int | str | Experiment, epochs: int | None = None, batch_size: int | None = None,
                   seed: int = 0, data=None, out_dir: str | os.PathLike = DEFAULT_OUT_DIR,
                   seeds: Sequence[int] | None = None, force: bool = False, log_every: int | None = None,
                   checkpoint_seconds: float = 30.0, eval_every: int = 1, speed: Speed | Mapping | None = None,
                   callbacks: Sequence[keras.callbacks.Callback] = ()) -> RunRecord | list[RunRecord]:
    """Train (or reuse) one experiment; with ``seeds`` run each seed and return a list.

    ``epochs`` and ``batch_size`` default to the experiment's recipe (the study's: 300 and
    512). ``data`` is what ``load_cifar10`` returns (None loads the default source); pixels
    are rescaled to what the experiment expects. An interrupted run resumes from its last
    checkpoint; a finished one with the same parameters is reused unless ``force``; a run
    another process is training is waited for, then reused.
    ``callbacks`` run after the package's own (timing, NaN stop, history, checkpoint, log).
    ``eval_every`` evaluates after every that many epochs (and after the first and last)
    instead of after each: the curves get fewer points and "best accuracy" is the best of
    those, so it names the run when it is not 1.
    ``speed`` (a ``Speed`` or a dict of its fields) changes how fast a run goes, not what it
    computes, so it does not name the run; its bfloat16 ``precision`` does.
    """
    exp = get_experiment(experiment)
    speed = Speed.coerce(speed)
    settings = RunSettings.from_speed(speed, epochs, batch_size, eval_every)  # refused before loading anything
    seeds = None if seeds is None else check_seeds("seeds", seeds)
    if data is None:
        data = load_cifar10(normalize=exp.normalize)
    if seeds is not None:
        return [run_experiment(exp, epochs=epochs, batch_size=batch_size, seed=s, data=data, out_dir=out_dir,
                               force=force, log_every=log_every, checkpoint_seconds=checkpoint_seconds,
                               eval_every=eval_every, speed=speed, callbacks=callbacks) for s in seeds]
    plan = plan_run(exp, data, seed, out_dir, settings)
    with run_lock(plan.run_dir, plan.label):
        clean_leftovers(plan.run_dir)
        if force:
            clear(plan.run_dir)
        record = finished_record(plan)
        if record is not None:
            progress.say(plan.label, f"reusing finished run {plan.run_dir} (test acc {record.test_acc:.2f} %)")
            return record
        write_atomic(plan.run_dir / PARAMS_FILE, json.dumps(plan.params, indent=1))
        return _train(plan, speed, log_every, checkpoint_seconds, callbacks)


def _train(plan: RunPlan, speed: Speed, log_every: int | None, checkpoint_seconds: float,
           callbacks: Sequence[keras.callbacks.Callback]) -> RunRecord:
    run_dir, recipe = plan.run_dir, plan.recipe
    model, initial_epoch, fit_batch, speed = _model_at_last_checkpoint(plan, speed)
    logger = ProgressLogger(plan.label, recipe.epochs, log_every, plan.evaluated_on)
    if initial_epoch < recipe.epochs:
        data = fit_data(plan.train, plan.evaluation, recipe.batch_size, plan.seed, fit_batch, speed.eval_batch_size,
                        speed.data_on_device)
        model.fit(**data, epochs=recipe.epochs, initial_epoch=initial_epoch,
                  validation_freq=evaluation_epochs(recipe.epochs, plan.eval_every), verbose=0,
                  callbacks=[EpochDraws(plan.seed, data["x"]), EpochTimer(), keras.callbacks.TerminateOnNaN(),
                             HistoryWriter(run_dir / HISTORY_FILE),
                             Checkpointer(run_dir, recipe.epochs, checkpoint_seconds), logger, *callbacks])
    elif recipe.ema:  # resumed after the last checkpoint: do what the end of ``fit`` does
        model.optimizer.finalize_variable_values(model.trainable_variables)
    history = read_history(run_dir / HISTORY_FILE)
    _finalize_statistics(plan, model, history)
    probabilities, plain = predict_each_view(model, plan.test[0], recipe.tta, recipe.batch_size)
    record = _make_record(plan, model, history, speed, (probabilities, plain))
    save_weights(model, run_dir / WEIGHTS_FILE)
    if record.status == "completed":
        write_predictions(run_dir, probabilities, *plan.test)
    write_atomic(run_dir / RECORD_FILE, record.to_json())
    remove_scaffolding(run_dir)
    logger.finished(record)
    return record


def _compiled_model(plan: RunPlan, speed: Speed) -> tuple[keras.Model, int, Speed]:
    """A fresh compiled model for the plan; returns it, the batch size ``fit`` gets (larger
    when JAX fuses steps) and the speed settings in effect (a backend may fall back)."""
    recipe = plan.recipe
    model = build_model(plan.experiment, seed=plan.seed, precision=plan.precision)
    prepare_model(model, plan.train[0])
    compile_steps, fit_batch = backend.prepare_steps(model, speed.steps_per_execution, recipe.batch_size)
    jit_compile = backend.usable_jit_compile(speed.jit_compile)
    compile_model(model, recipe, steps_per_epoch(len(plan.train[0]), recipe.batch_size), recipe.epochs,
                  jit_compile=jit_compile, steps_per_execution=compile_steps)
    speed = replace(speed, jit_compile=jit_compile, steps_per_execution=compile_steps * fit_batch // recipe.batch_size)
    return model, fit_batch, speed


def _model_at_last_checkpoint(plan: RunPlan, speed: Speed) -> tuple[keras.Model, int, int, Speed]:
    """A compiled model at the newest checkpoint that is intact and that the history
    reaches (else at the start), and the epoch to start from; history past it is dropped."""
    run_dir = plan.run_dir
    rows = len(read_history(run_dir / HISTORY_FILE))
    for checkpoint in [*checkpoints(run_dir), None]:
        epoch = checkpoint_epoch(checkpoint) if checkpoint else 0
        if epoch > rows:
            warnings.warn(f"{checkpoint}: not used: {run_dir / HISTORY_FILE} holds only {rows} epochs, "
                          f"so resuming after epoch {epoch} would leave a gap", stacklevel=3)
            continue
        keras.utils.set_random_seed(plan.seed)  # order and draws per epoch: batches.EpochDraws
        model, fit_batch, effective = _compiled_model(plan, speed)
        if checkpoint is not None:
            try:
                model.optimizer.build(model.trainable_variables)
                model.load_weights(checkpoint)
            except (OSError, ValueError, KeyError) as error:
                aside = set_aside(checkpoint)
                warnings.warn(f"{checkpoint}: damaged checkpoint ({type(error).__name__}: {error}); "
                              f"moved to {aside.name}, trying an older one", stacklevel=3)
                continue
            progress.say(plan.label, f"resuming after epoch {epoch} from {checkpoint}")
        truncate_history(run_dir / HISTORY_FILE, epoch)
        return model, epoch, fit_batch, effective
    raise AssertionError("unreachable: starting from scratch always succeeds")


def _make_record(plan: RunPlan, model: keras.Model, history: pd.DataFrame, speed: Speed,
                 test_probabilities: tuple[np.ndarray, np.ndarray] | None = None) -> RunRecord:
    """The record of a finished run; ``test_probabilities`` (the final model's with the
    recipe's test-time views, and its plain view's: ``predict_each_view``) are computed
    here when not given. Nothing is predicted twice: the last epoch's validation score is
    the final model's unless a weight average replaced the weights after it."""
    recipe, run_dir = plan.recipe, plan.run_dir
    if history.empty:
        raise RunError(f"{run_dir / HISTORY_FILE}: training produced no history")
    last = history.iloc[-1]
    diverged = not math.isfinite(last["loss"])
    if len(history) != recipe.epochs and not diverged:
        raise RunError(f"{run_dir / HISTORY_FILE}: holds {len(history)} of {recipe.epochs} epochs although "
                       "training ended normally (was the file changed while the run was training?)")
    evaluated = history["val_accuracy"]
    best = int(evaluated.fillna(-1).idxmax())
    seconds = history["epoch_seconds"]
    per_epoch = float(seconds.iloc[1:].median() if len(seconds) > 1 else seconds.iloc[0])
    final_eval = bool(recipe.validation or recipe.tta != "none" or recipe.ema)
    on_test = plan.evaluated_on == "test"
    val_acc = single_view = float("nan")
    if final_eval and not diverged:
        if test_probabilities is None:
            test_probabilities = predict_each_view(model, plan.test[0], recipe.tta, recipe.batch_size)
        test_loss, test_acc = scores(test_probabilities[0], plan.test[1])
        single_view = scores(test_probabilities[1], plan.test[1])[1]
        if not on_test:
            last_val = float(last["val_accuracy"])
            val_acc = (last_val if math.isfinite(last_val) and not recipe.ema
                       else evaluate_views(model, *plan.evaluation, "none", recipe.batch_size)[1])
    else:
        test_loss, test_acc = float(last["val_loss"]), float(last["val_accuracy"])
        single_view = val_acc = test_acc
    final = _final_model_figures(plan, model, diverged, single_view)
    return RunRecord(
        experiment=plan.experiment.number, name=plan.experiment.name, seed=plan.seed,
        status="diverged" if diverged else "completed", epochs_completed=len(history),
        train_loss=float(last["loss"]), test_loss=test_loss, train_acc=100 * float(last["accuracy"]),
        test_acc=100 * test_acc, best_test_acc=100 * float(evaluated.iloc[best]) if on_test else float("nan"),
        best_epoch=best + 1, param_count=model.count_params(), wall_seconds=float(seconds.sum()),
        seconds_per_epoch=per_epoch, images_per_second=plan.params["train_size"] / per_epoch,
        backend=backend.backend_name(), device=backend.device_description(), data_source=plan.source,
        versions=backend.versions(), params=plan.params, speed=speed.as_dict(),
        history={k: [float(v) for v in history[k]] for k in history.columns}, run_dir=str(run_dir),
        variant=plan.experiment.variant, evaluated_on=plan.evaluated_on,
        val_acc=float("nan") if on_test else 100 * val_acc, single_view_test_acc=100 * single_view,
        best_val_acc=float("nan") if on_test else 100 * float(evaluated.iloc[best]), source=source_identity(),
        **final)


def _final_model_figures(plan: RunPlan, model: keras.Model, diverged: bool, single_view: float) -> dict:
    """The record's inference-mode training figures and, for batch-norm models, the test
    accuracy with re-estimated statistics (see ``final_model``), on the plain view like
    ``single_view`` (the final model's plain-view test accuracy, in [0, 1]): the comparison
    needs no test-time views, which would cost as much again as the recipe's own
    prediction. NaN for a diverged run."""
    nan = float("nan")
    has_bn = bool(batch_norm_layers(model))
    figures = {"train_eval_acc": nan, "train_eval_loss": nan, "train_eval_images": 0, "bn_reestimated_test_acc": nan,
               "bn_statistics": ("re-estimated" if plan.recipe.ema else "running") if has_bn else ""}
    if diverged:
        return figures
    recipe, (images, labels) = plan.recipe, plan.train_eval
    loss, accuracy = evaluate_views(model, images, labels, recipe.tta, recipe.batch_size)
    figures.update(train_eval_acc=100 * accuracy, train_eval_loss=loss, train_eval_images=len(images))
    if has_bn and recipe.ema:
        figures["bn_reestimated_test_acc"] = 100 * single_view  # the final model already is
    elif has_bn:
        old = reestimate_batch_norm(model, images)
        try:
            figures["bn_reestimated_test_acc"] = 100 * evaluate_views(model, *plan.test, "none",
                                                                      recipe.batch_size)[1]
        finally:
            restore_batch_norm(model, old)
    return figures


def _finalize_statistics(plan: RunPlan, model: keras.Model, history: pd.DataFrame) -> None:
    """A weight-averaged model's batch-norm statistics come from the weights it averaged,
    never from itself: re-estimate them, so the final model is consistent."""
    if plan.recipe.ema and batch_norm_layers(model) and len(history) and math.isfinite(history["loss"].iloc[-1]):
        reestimate_batch_norm(model, plan.train_eval[0])


def finished_record(plan: RunPlan) -> RunRecord | None:
    """The run's record if it is finished and intact. A damaged record is rebuilt from
    the history and the final weights when both are complete, else set aside (the run
    then resumes or retrains); never trusted as it is."""
    path = plan.run_dir / RECORD_FILE
    if not path.exists():
        return None
    try:
        record = RunRecord.from_file(path)
        if record.params != plan.params:
            raise RunError(f"{path}: its parameters are not this run's (edited or copied by hand?)")
        return record
    except RunError as error:
        rebuilt = _rebuild_record(plan)
        if rebuilt is not None:
            warnings.warn(f"{error}; rebuilt it from {HISTORY_FILE} and {WEIGHTS_FILE}", stacklevel=2)
            write_atomic(path, rebuilt.to_json())
            return rebuilt
        aside = set_aside(path)
        warnings.warn(f"{error}; moved it to {aside.name} and the run will be trained again", stacklevel=2)
        return None


def _rebuild_record(plan: RunPlan) -> RunRecord | None:
    history = read_history(plan.run_dir / HISTORY_FILE)
    weights = plan.run_dir / WEIGHTS_FILE
    finished = len(history) == plan.recipe.epochs or (len(history) and not np.isfinite(history["loss"].iloc[-1]))
    if not weights.exists() or not finished:
        return None
    speed = Speed(precision=plan.precision)
    model = _compiled_model(plan, speed)[0]
    try:
        model.optimizer.build(model.trainable_variables)
        model.load_weights(weights)
    except (OSError, ValueError, KeyError) as error:
        warnings.warn(f"{weights}: damaged final weights ({error})", stacklevel=3)
        return None
    return _make_record(plan, model, history, speed)


def load_trained_model(record: RunRecord) -> keras.Model:
    """The final model of a finished run (chapter 6 tries test-time views on it)."""
    exp = get_experiment(record.experiment)
    if record.variant:
        raise ValueError(f"{record.run_dir}: a variant run; rebuild it from its experiment's vary(...)")
    weights = Path(record.run_dir) / WEIGHTS_FILE
    model = build_model(exp, seed=record.seed, precision=record.params.get("precision", "float32"))
    try:
        model.load_weights(weights)
    except (OSError, ValueError, KeyError) as error:
        raise RunError(f"{weights}: cannot load the run's final weights ({error})") from error
    return model
