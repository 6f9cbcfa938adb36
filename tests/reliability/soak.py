"""The long soak, now the randomised fault campaign (``tests.reliability.campaign``): kept as an
alias so that ``python -m tests.reliability.soak --minutes 30 [--seed 1]`` still runs; it takes
the campaign's options (``--brokers``, ``--workers``) and exits 1 on any audit problem."""

from __future__ import annotations

import sys

from tests.reliability.campaign import main

if __name__ == "__main__":
    sys.exit(main())
