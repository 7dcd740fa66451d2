"""Render the synthetic Gen3DHF-style raw dataset (same as `lmmeval synth`).

    python data_prep/synthesize.py data/raw --n 200 --seed 0
"""

import sys

from lmmeval.cli import main

if __name__ == "__main__":
    sys.exit(main(["synth", *sys.argv[1:]]))
