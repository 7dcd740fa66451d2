"""Stage 1: instruction tuning (paper section 4.2).

LoRA on the LLM learns to answer the quality, authenticity and distortion questions
with the text levels and categories of the manifest; language-model loss on the
answers only; the vision tower stays frozen.

    deepspeed train/stage1_instruct.py --config configs/tiny/stage1.yaml --deepspeed configs/deepspeed/zero2.json
"""

import sys

from lmmeval.training.cli import stage_main

if __name__ == "__main__":
    sys.exit(stage_main(1, __doc__))
