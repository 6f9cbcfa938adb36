"""Allow ``python -m airgrid`` as an alias of the ``airgrid`` command."""

from airgrid.streams.cli import main

if __name__ == "__main__":
    main()
