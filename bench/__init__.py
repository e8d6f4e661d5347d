"""Benchmarks and reliability campaigns of upgrader, run on the lab (outside the test suite).

Owns the measurement scripts (``python -m bench.run all``: fan-out, orchestration
overhead, drain, drained window, memory) and the campaigns (``bench.chaos``,
``bench.fuzz``); each prints a table and writes ``bench/results/*.json``. Must not: be
imported by the product (``upgrader`` never imports ``bench``), install anything into the
project's virtualenv, or assert timings (numbers are reported, never judged).
"""
