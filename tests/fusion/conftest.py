"""Fixtures of the fusion tests: the trainers' planted VA store."""

from tests.trainers.conftest import va_store, va_store_template

__all__ = ["va_store", "va_store_template"]
