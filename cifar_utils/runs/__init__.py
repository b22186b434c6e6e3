"""Everything about a run: what names it, its folder on disk, its record, training it, and
training many at once.

Only ``train`` (with ``callbacks``) imports Keras: a run's record, folder, identity, the
pool, the cluster's client and the reference folders are read and planned without loading
a backend, so a driver or a report stays light. Nothing here knows the course's chapters:
the course layer (``chapter``, ``summary``, ``report``, ``run_all``) reads from here, never
the other way round (tests/test_layers.py checks both).

    folder.py       a run folder's files, its checkpoints, its leftovers
    storage         (``cifar_utils.storage``) files written whole, a full disk named
    lock.py         one process owns a run folder; another waits for it
    history.py      the per-epoch history file
    record.py       ``RunRecord`` and finding records on disk
    predictions.py  the final model's test predictions, kept beside the record
    splits.py       which images a run trains and is judged on
    identity.py     what names a run: ``plan_run`` and ``find_finished``
    source.py       which code made a record
    progress.py     a run's progress lines, marked for a pool's driver
    callbacks.py    the Keras callbacks that keep a run resumable (Keras)
    train.py        ``run_experiment``: reuse, resume or train, and make the record (Keras)
    pool.py         many runs on worker processes of one machine
    cluster.py      many runs on a Dask cluster
    reference.py    committed reference folders of finished runs
    reference_progress.py  how far a reference is from its profile's runs
"""
