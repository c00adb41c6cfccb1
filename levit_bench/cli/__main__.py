"""``python -m levit_bench.cli``: the same as the ``levit-bench`` command."""
import sys

from . import main

sys.exit(main())
