"""``python -m upgrader``: the same entry point as the ``upgrader`` console script."""

from upgrader.cli import main

if __name__ == "__main__":
    main()
