"""Training command groups: ``train``, ``evaluate``, ``predict``, ``submit``, ``fuse``, ``ablate`` and
``search`` (each module registers its commands on the shared app when imported by ``cli/main.py``)."""
