"""Research experiments around the assessor: the CNN baseline, backbone probes, stage 0 (vision
pretraining of the tiny preset), k-fold cross-validation and the speed benchmark. Not part of the
inference or training API; ``import lmmeval`` never loads them."""
