"""``python -m lmmeval.report RESULTS.jsonl ... --out DIR``: the same as `lmmeval report`."""

import sys

from .command import main

sys.exit(main())
