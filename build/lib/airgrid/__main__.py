"""``python -m airgrid``: the ``airgrid`` command."""

from airgrid.cli import main

if __name__ == "__main__":
    main()
