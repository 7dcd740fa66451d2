r"""The published Gen3DHF release -> manifest.jsonl (same as `lmmeval import-gen3dhf`).

    python data_prep/import_gen3dhf.py Gen3DHF/ data/gen3dhf --labels LMME3DHF/main/datasets/numerical \
        [--folds 5] [--seed 0] [--copy] [--allow-missing] [--red-dots DIR]
"""

import sys

from lmmeval.cli import main

if __name__ == "__main__":
    sys.exit(main(["import-gen3dhf", *sys.argv[1:]]))
