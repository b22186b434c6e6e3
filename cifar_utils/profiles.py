"""The course's sizes: what each profile (``--profile``, a notebook's ``profile``) sets.

A profile sets the data, the seeds, and the epochs and batch size of the runs that use
the study's recipe (``course.run_settings``); chapter 6's own parameters have a set per
profile too. Kept apart from ``course`` so that checking a notebook's parameters
(``parameters``) needs no knowledge of the chapters.
"""

from __future__ import annotations

# Chapter 6's own recipes keep their epochs and batch size, except in quick (``every_recipe``).
# quick: 500 sample images, 2 epochs for every run: every chapter and figure in minutes, no verdict.
# laptop: 5,000 real training images (500 a class), the full 10,000-image test set (its
#   binomial noise about 0.5 points), 10 epochs at batch 64 (790 steps; the study's 512
#   would give 100): the study's effects show and can be judged on 2 CPU cores in about
#   30 minutes (docs/benchmarks.md; 15 epochs and three seeds per factorial cell took an
#   estimated 55 minutes of training alone).
# cpu: the reference a 2-core CPU can make (issue 18): the full data, the study's recipe
#   (Adam 1e-3, batch 512) for 30 of its 300 epochs, seed 0; chapter 6's factorial and
#   sweeps on its small setting (``CHAPTER6_CPU``). By the cost table 10.5 CPU-hours (5.5
#   for experiments 1-17), but that table runs about 2x slow against the reference's own
#   epochs (experiment 2: 19.4 s there, 9-11 s in the reference run; experiment 21: 193.5 s
#   there, 84 s in issue 16's run), so about 5-6 hours: the budget its issue allows.
# full: the study's recipe as it was (300 epochs, batch 512) on the full data.
PROFILES = {
    "quick": {"data": "sample", "epochs": 2, "batch_size": None, "seeds": [0], "subset": 500, "every_recipe": True},
    "laptop": {"data": None, "epochs": 10, "batch_size": 64, "seeds": [0], "subset": 5000, "every_recipe": False},
    "cpu": {"data": None, "epochs": 30, "batch_size": None, "seeds": [0], "subset": None, "every_recipe": False},
    "full": {"data": None, "epochs": None, "batch_size": None, "seeds": [0], "subset": None, "every_recipe": False},
}
# Chapter 6's own parameters; defaults as in its notebook (the full profile).
CHAPTER6_DEFAULTS = {"factorial_seeds": [0, 1, 2], "modern_seeds": [0, 1, 2], "fast_seeds": [0, 1, 2, 3, 4],
                     "grid_epochs": 30, "learning_rates": [3e-4, 1e-3, 3e-3], "batch_sizes": [128, 512, 2048],
                     "dropout_rates": [0.0, 0.1, 0.2, 0.3, 0.4, 0.5], "small_subset": 0}
# What --quick uses instead: every idea shows, each run is a smoke test.
# (One seed per factorial cell: the effects show, their standard errors need the full profile.)
CHAPTER6_QUICK = {"factorial_seeds": [0], "modern_seeds": [0], "fast_seeds": [0], "grid_epochs": 2,
                  "learning_rates": [1e-3, 3e-3], "batch_sizes": [128, 512], "dropout_rates": [0.0, 0.5],
                  "small_subset": 0}
# The laptop profile: two seeds per factorial cell (its effects get measured error bars,
# the spread pooled over the eight cells: 8 degrees of freedom), a 2 x 2 grid and three
# dropout rates at the profile's 10 epochs.
CHAPTER6_LAPTOP = {"factorial_seeds": [0, 1], "modern_seeds": [0], "fast_seeds": [0], "grid_epochs": 10,
                   "learning_rates": [1e-3, 3e-3], "batch_sizes": [64, 512], "dropout_rates": [0.0, 0.3, 0.5],
                   "small_subset": 0}
# The CPU reference: the factorial (three seeds a cell) and the sweeps on a stratified
# 10,000 of the 50,000 training images (its "small setting", ``beyond.small_label``; the
# test set whole), as its issue allows when the full one does not fit its 6 CPU-hours;
# experiment 21 over three seeds and experiment 20 once, on the full data at their recipes.
CHAPTER6_CPU = {"factorial_seeds": [0, 1, 2], "modern_seeds": [0], "fast_seeds": [0, 1, 2], "grid_epochs": 30,
                "learning_rates": [1e-3, 3e-3], "batch_sizes": [128, 512], "dropout_rates": [0.0, 0.3, 0.5],
                "small_subset": 10_000}
CHAPTER6_PROFILES = {"quick": CHAPTER6_QUICK, "laptop": CHAPTER6_LAPTOP, "cpu": CHAPTER6_CPU,
                     "full": CHAPTER6_DEFAULTS}


def profile_settings(profile: str | None) -> dict:
    """A profile's settings; refuses an unknown name by listing the known ones."""
    name = profile or "full"
    if name not in PROFILES:
        raise ValueError(f"profile {profile!r}: unknown; choose one of {', '.join(PROFILES)}")
    return PROFILES[name]
