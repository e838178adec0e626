"""``python -m gptunnel_async.cli``: the same as the ``gptunnel`` script."""

from __future__ import annotations

import sys

from . import main

if __name__ == "__main__":
    sys.exit(main())
