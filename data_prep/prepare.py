"""Raw study annotations -> manifest.jsonl (same as `lmmeval prepare`).

    python data_prep/prepare.py data/raw data/prepared --folds 5 --seed 0
"""

import sys

from lmmeval.cli import main

if __name__ == "__main__":
    sys.exit(main(["prepare", *sys.argv[1:]]))
