"""Chapter 6's run plan, pinned: the experiments, seeds and order ``course.needed_runs``
plans for each profile, and the tasks ``./run_all.sh`` makes of them, as they were before
chapter 6's registry experiments were planned from the registry (commit 2138bdf). A change
that moves, adds or drops a run of the course's own registry must show up here.

Each word is ``key:seed`` (``*``: the run keeps its own batch size; the plans at ``seeds=[0]``)
or, for a task, ``experiment[variant]:seed:epochs:batch size``.
"""

import re
from pathlib import Path

import pytest

from cifar_utils import run_all as driver
from cifar_utils.course import all_seeds, needed_runs

ROOT = Path(__file__).resolve().parents[1]
CHAPTER6 = "06_beyond_the_study"
ARGV = {"quick": ["--quick"], "laptop": ["--profile", "laptop", "--data", "x.npz"],
        "cpu": ["--profile", "cpu", "--data", "x.npz"], "full": ["--data", "x.npz"]}

PLANS = {
    'quick': """
    exp06:0 exp07:0 exp11:0 exp12:0 exp08:0 exp13:0 exp18:0 exp09:0 exp19:0 exp20:0 exp21:0
    exp09-lr0.001-batch128:0* exp09-lr0.001-batch512:0* exp09-lr0.003-batch128:0* exp09-lr0.003-batch512:0*
    exp09-dropout0:0 exp09-dropout0.5:0
    """,
    'laptop': """
    exp06:0 exp06:1 exp07:0 exp07:1 exp11:0 exp11:1 exp12:0 exp12:1 exp08:0 exp08:1 exp13:0 exp13:1 exp18:0
    exp18:1 exp09:0 exp09:1 exp19:0 exp20:0 exp21:0 exp09-lr0.001-batch64:0* exp09-lr0.001-batch512:0*
    exp09-lr0.003-batch64:0* exp09-lr0.003-batch512:0* exp09-dropout0:0 exp09-dropout0.3:0 exp09-dropout0.5:0
    """,
    'cpu': """
    exp06-train-images10000:0 exp06-train-images10000:1 exp06-train-images10000:2 exp07-train-images10000:0
    exp07-train-images10000:1 exp07-train-images10000:2 exp11-train-images10000:0 exp11-train-images10000:1
    exp11-train-images10000:2 exp12-train-images10000:0 exp12-train-images10000:1 exp12-train-images10000:2
    exp08-train-images10000:0 exp08-train-images10000:1 exp08-train-images10000:2 exp13-train-images10000:0
    exp13-train-images10000:1 exp13-train-images10000:2 exp18-train-images10000:0 exp18-train-images10000:1
    exp18-train-images10000:2 exp09-train-images10000:0 exp09-train-images10000:1 exp09-train-images10000:2
    exp19:0 exp20:0 exp21:0 exp21:1 exp21:2 exp09-lr0.001-batch128-train-images10000:0*
    exp09-lr0.001-batch512-train-images10000:0* exp09-lr0.003-batch128-train-images10000:0*
    exp09-lr0.003-batch512-train-images10000:0* exp09-dropout0-train-images10000:0
    exp09-dropout0.3-train-images10000:0 exp09-dropout0.5-train-images10000:0
    """,
    'full': """
    exp06:0 exp06:1 exp06:2 exp07:0 exp07:1 exp07:2 exp11:0 exp11:1 exp11:2 exp12:0 exp12:1 exp12:2 exp08:0
    exp08:1 exp08:2 exp13:0 exp13:1 exp13:2 exp18:0 exp18:1 exp18:2 exp09:0 exp09:1 exp09:2 exp19:0 exp20:0
    exp20:1 exp20:2 exp21:0 exp21:1 exp21:2 exp21:3 exp21:4 exp09-lr0.0003-batch128:0*
    exp09-lr0.0003-batch512:0* exp09-lr0.0003-batch2048:0* exp09-lr0.001-batch128:0* exp09-lr0.001-batch512:0*
    exp09-lr0.001-batch2048:0* exp09-lr0.003-batch128:0* exp09-lr0.003-batch512:0* exp09-lr0.003-batch2048:0*
    exp09-dropout0:0 exp09-dropout0.1:0 exp09-dropout0.2:0 exp09-dropout0.3:0 exp09-dropout0.4:0
    exp09-dropout0.5:0
    """,
}
TASKS = {
    'quick': """
    6:0:2:None 7:0:2:None 11:0:2:None 12:0:2:None 8:0:2:None 13:0:2:None 18:0:2:None 9:0:2:None 19:0:2:None
    20:0:2:None 21:0:2:None 9[lr=0.001,batch=128]:0:2:None 9[lr=0.001,batch=512]:0:2:None
    9[lr=0.003,batch=128]:0:2:None 9[lr=0.003,batch=512]:0:2:None 9[dropout=0]:0:2:None
    9[dropout=0.5]:0:2:None
    """,
    'laptop': """
    6:0:10:64 6:1:10:64 7:0:10:64 7:1:10:64 11:0:10:64 11:1:10:64 12:0:10:64 12:1:10:64 8:0:10:64 8:1:10:64
    13:0:10:64 13:1:10:64 18:0:10:64 18:1:10:64 9:0:10:64 9:1:10:64 19:0:10:64 20:0:None:None 21:0:None:None
    9[lr=0.001,batch=64]:0:None:None 9[lr=0.001,batch=512]:0:None:None 9[lr=0.003,batch=64]:0:None:None
    9[lr=0.003,batch=512]:0:None:None 9[dropout=0]:0:None:64 9[dropout=0.3]:0:None:64 9[dropout=0.5]:0:None:64
    """,
    'cpu': """
    6[train_images=10000]:0:30:None 6[train_images=10000]:1:30:None 6[train_images=10000]:2:30:None
    7[train_images=10000]:0:30:None 7[train_images=10000]:1:30:None 7[train_images=10000]:2:30:None
    11[train_images=10000]:0:30:None 11[train_images=10000]:1:30:None 11[train_images=10000]:2:30:None
    12[train_images=10000]:0:30:None 12[train_images=10000]:1:30:None 12[train_images=10000]:2:30:None
    8[train_images=10000]:0:30:None 8[train_images=10000]:1:30:None 8[train_images=10000]:2:30:None
    13[train_images=10000]:0:30:None 13[train_images=10000]:1:30:None 13[train_images=10000]:2:30:None
    18[train_images=10000]:0:30:None 18[train_images=10000]:1:30:None 18[train_images=10000]:2:30:None
    9[train_images=10000]:0:30:None 9[train_images=10000]:1:30:None 9[train_images=10000]:2:30:None
    19:0:30:None 20:0:None:None 21:0:None:None 21:1:None:None 21:2:None:None
    9[lr=0.001,batch=128,train_images=10000]:0:None:None 9[lr=0.001,batch=512,train_images=10000]:0:None:None
    9[lr=0.003,batch=128,train_images=10000]:0:None:None 9[lr=0.003,batch=512,train_images=10000]:0:None:None
    9[dropout=0,train_images=10000]:0:None:None 9[dropout=0.3,train_images=10000]:0:None:None
    9[dropout=0.5,train_images=10000]:0:None:None
    """,
    'full': """
    6:0:None:None 6:1:None:None 6:2:None:None 7:0:None:None 7:1:None:None 7:2:None:None 11:0:None:None
    11:1:None:None 11:2:None:None 12:0:None:None 12:1:None:None 12:2:None:None 8:0:None:None 8:1:None:None
    8:2:None:None 13:0:None:None 13:1:None:None 13:2:None:None 18:0:None:None 18:1:None:None 18:2:None:None
    9:0:None:None 9:1:None:None 9:2:None:None 19:0:None:None 20:0:None:None 20:1:None:None 20:2:None:None
    21:0:None:None 21:1:None:None 21:2:None:None 21:3:None:None 21:4:None:None
    9[lr=0.0003,batch=128]:0:None:None 9[lr=0.0003,batch=512]:0:None:None 9[lr=0.0003,batch=2048]:0:None:None
    9[lr=0.001,batch=128]:0:None:None 9[lr=0.001,batch=512]:0:None:None 9[lr=0.001,batch=2048]:0:None:None
    9[lr=0.003,batch=128]:0:None:None 9[lr=0.003,batch=512]:0:None:None 9[lr=0.003,batch=2048]:0:None:None
    9[dropout=0]:0:None:None 9[dropout=0.1]:0:None:None 9[dropout=0.2]:0:None:None 9[dropout=0.3]:0:None:None
    9[dropout=0.4]:0:None:None 9[dropout=0.5]:0:None:None
    """,
}
SUMMARY_SEEDS = {"quick": [0], "laptop": [0, 1], "cpu": [0, 1, 2], "full": [0, 1, 2, 3, 4]}


def pinned(profile: str, seeds: list[int]) -> list[str]:
    """The pinned plan at ``seeds``: at [0] as written; more seeds add, right after each run
    of experiment 19 and each sweep point (the runs at the chapter's ``seeds``), its runs at them."""
    words = []
    for word in PLANS[profile].split():
        words.append(word)
        if re.match(r"exp(19|09-lr|09-dropout)", word):
            words += [word.replace(":0", f":{seed}") for seed in seeds[1:]]
    return words


@pytest.mark.parametrize("seeds", [[0], [0, 1]])
@pytest.mark.parametrize("profile", list(PLANS))
def test_chapter6_plans_the_runs_it_planned_before(profile, seeds):
    runs = needed_runs(CHAPTER6, {"profile": None if profile == "full" else profile, "seeds": seeds})
    assert [f"{r.experiment.key}:{r.seed}" + ("*" if r.keep_batch_size else "") for r in runs] == pinned(profile, seeds)


@pytest.mark.parametrize("profile", list(TASKS))
def test_run_all_trains_the_chapter6_tasks_it_trained_before(profile):
    args = driver.parse_args(ARGV[profile])
    tasks = driver.training_tasks(args, driver.chapters(ROOT / "notebooks", ["06"]))
    words = [f"{t.experiment}{'[' + t.variant_label.replace(' ', '') + ']' if t.variant_label else ''}:{t.seed}:"
             f"{t.settings.epochs}:{t.settings.batch_size}" for t in tasks]
    assert words == TASKS[profile].split()
    summary = driver.notebook_parameters(args, ROOT / "notebooks" / "05_summary.ipynb")
    assert summary["seeds"] == SUMMARY_SEEDS[profile]
    assert all_seeds({"profile": None if profile == "full" else profile}) == SUMMARY_SEEDS[profile]


def test_the_summary_looks_for_every_seed_the_chapters_train():
    """``--seeds 0,1,2`` trains chapters 1-4 at three seeds; the summary must read all three
    (it once took chapter 6's seed lists only, so seeds 1 and 2 of experiments 1-17 went unread)."""
    args = driver.parse_args(["--quick", "--seeds", "0,1,2"])
    trained = {t.seed for t in driver.training_tasks(args, driver.chapters(ROOT / "notebooks", ["01"]))}
    summary = driver.notebook_parameters(args, ROOT / "notebooks" / "05_summary.ipynb")
    assert trained == {0, 1, 2} and trained <= set(summary["seeds"])
