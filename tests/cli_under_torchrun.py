"""Run under torchrun by tests/test_train_ddp.py: the ``slimnas`` command line, then a check that it left no
process group behind (a live gloo group can abort the process at interpreter exit)."""
from __future__ import annotations

import sys

import torch.distributed as dist

from slimnas.cli import main

rc = main(sys.argv[1:])
if dist.is_initialized():
    print("the command left its process group alive", file=sys.stderr)
    sys.exit(3)
sys.exit(rc)
