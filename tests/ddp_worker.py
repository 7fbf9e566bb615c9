"""Run under torchrun by tests/test_train_ddp.py: a few DDP steps, then each rank saves its weights."""
from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.distributed as dist

import slimnas
from slimnas.data import DataConfig, load_data
from slimnas.train import Trainer, TrainConfig, make_strategy
from tests.nets import TinyNet

out = Path(sys.argv[1])
strategy = sys.argv[2]
space = {"depth": True, "kernel_sizes": (3, 5)} if sys.argv[3:] == ["depth"] else {}  # blocks some steps leave unused
torch.set_num_threads(1)
data = load_data(DataConfig("digits", image_size=16))
net = slimnas.convert(TinyNet(10), 16, **space)
st = make_strategy(strategy, net, n_random=1, **({"k": 2} if strategy == "cafenet" else {}))
cfg = TrainConfig(epochs=1, steps_per_epoch=4, batch_size=16, eval_images=0, progress=False, lr=0.1)
trainer = Trainer(net, st, data, cfg, run_dir=out / "run", device="cpu")
assert trainer.dist.world_size == 2
trainer.fit()
torch.save({k: v.clone() for k, v in net.state_dict().items()}, out / f"rank{dist.get_rank()}.pt")
dist.destroy_process_group()
