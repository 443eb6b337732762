"""Evaluate a checkpoint on MMAD: a thin wrapper of
:func:`omniad_train.evaluation.cli.mmad_main`.

    python benchmarks/run_mmad.py --model CKPT --mmad_json MMAD/mmad.json --image_root MMAD \
        --out runs/mmad --shots 0 --batch_size 8 [--limit N] [--compare_paper]

Sharded: ``torchrun --nproc_per_node 4 benchmarks/run_mmad.py ...`` (or ``--shard_index i
--num_shards n`` per process); ``--merge --out runs/mmad`` rebuilds the report.
"""

import sys

from omniad_train.evaluation.cli import mmad_main

if __name__ == "__main__":
    sys.exit(mmad_main())
