"""Stage 3: the saliency decoder, from scratch (paper section 4.2, Eq. 5).

Everything but the decoder is frozen; loss w1 L1 + w2 CC + w3 KL + w4 BCE against
the distortion-aware saliency maps of each annotated view.

    deepspeed train/stage3_saliency.py --config configs/tiny/stage3.yaml --deepspeed configs/deepspeed/zero2.json
"""

import sys

from lmmeval.training.cli import stage_main

if __name__ == "__main__":
    sys.exit(stage_main(3, __doc__))
