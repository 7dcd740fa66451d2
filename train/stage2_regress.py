"""Stage 2: LoRA + regression head on the MOS (paper section 4.2).

Continues from stage 1's adapter; L1 loss between the regression head's scores and
both MOS, optionally keeping the language-model loss with a weight (``lm_weight``).

    deepspeed train/stage2_regress.py --config configs/tiny/stage2.yaml --deepspeed configs/deepspeed/zero2.json
"""

import sys

from lmmeval.training.cli import stage_main

if __name__ == "__main__":
    sys.exit(stage_main(2, __doc__))
