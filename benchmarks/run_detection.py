"""Evaluate anomaly detection: a thin wrapper of
:func:`omniad_train.evaluation.cli.detection_main`.

    python benchmarks/run_detection.py --model CKPT --root MVTec-AD=data/mvtec_ad \
        --root VisA=data/visa --out runs/det --shots 0 --save_masks 4 [--compare_paper]

Sharded: ``torchrun --nproc_per_node 4 benchmarks/run_detection.py ...`` (or
``--shard_index i --num_shards n`` per process); ``--merge --out runs/det`` rebuilds the
report.
"""

import sys

from omniad_train.evaluation.cli import detection_main

if __name__ == "__main__":
    sys.exit(detection_main())
