"""Hyperparameter search over a VA model's config on Dask (``affectcache search``).

:func:`~affectcache.trainers.search.run.run_search` runs a
:class:`~affectcache.trainers.search.spec.SearchSpec` (``grid``, ``greedy`` or ``tpe``) where every trial
is a normal run folder trained as a Dask task; results go to ``search_results.csv`` and
``best_trial.json`` as trials finish, and a rerun resumes.
"""
