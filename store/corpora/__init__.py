"""Corpus adapters: read a corpus as its owners ship it, validate it, import it into affectcache."""
