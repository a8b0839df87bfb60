"""Benchmarks (not part of CI). ``.venv/bin/python -m bench`` runs the bot-overhead benchmark;
see docs/benchmarks.md. ``bench/ledger.py`` is the ledger's own benchmark, reused by it."""
