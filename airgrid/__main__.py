"""Allow ``python -m airgrid`` as an alias of the ``airgrid`` command."""

from airgrid.cli.main import main

if __name__ == "__main__":
    main()
