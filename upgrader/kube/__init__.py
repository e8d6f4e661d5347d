"""Kubernetes operations on the official ``kubernetes`` client (I/O edge).

Must not: print, or be imported by ``upgrader.core``.
"""
