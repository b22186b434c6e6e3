"""Everything about a run: what names it, its folder on disk, its record, training it, and
training many at once.

Only ``train`` and ``callbacks`` import Keras: a run's record, folder, identity, the pool,
the cluster's client and the reference folders are read and planned without loading a
backend, so a driver, a table or a report stays light. Nothing here knows the course's
chapters: the course layer (``chapter``, ``summary``, ``report``, ``run_all``) reads from
here, never the other way round (tests/test_layers.py checks both).

    folder       a run folder's files, its checkpoints, what a killed process leaves
    lock         one process owns a run folder; another waits for it
    history      the per-epoch history file
    record       ``RunRecord``, and finding records on disk
    predictions  the final model's test predictions, kept beside the record
    splits       which images a run trains and is judged on
    settings     ``RunSettings``: the settings that name a run beside its experiment, data and seed
    identity     what names a run: ``plan_run``, ``find_finished``
    source       which code made a record
    progress     a run's progress lines, marked for a pool's driver
    callbacks    the Keras callbacks that keep a run resumable (Keras)
    train        ``run_experiment``: reuse, resume or train, and make the record (Keras)
    pool         many runs on worker processes of this machine
    cluster      many runs on a Dask cluster
    reference    committed folders of finished runs, read and exported
    reference_progress  how far a reference is from its profile's runs
"""
