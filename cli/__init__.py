"""The ``affectcache`` command line: a thin Typer shell over library calls."""
