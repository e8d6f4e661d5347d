"""The pure core: versions, policy, planning, rendering, drain selection.

Nothing under ``upgrader.core`` may import paramiko, kubernetes, typer or rich, or do
network I/O; ``tests/unit/test_layering.py`` enforces it.
"""
