"""Trains the tiny HMR 2.0 network a few steps on fixed batches, either with 2 DDP processes (launched by
torchrun, gloo on CPU; rank r takes its half of each step's samples) or in one process on the combined batch,
with SGD (Adam would turn the float noise of gradients that are zero in theory into full-size steps);
writes the final weights. Used by tests/test_training.py::test_ddp_matches_one_process_on_the_combined_batches."""

import sys

import lightning as L
import torch

from hmr.data import SampleDataset, collate
from hmr.data.npz import NpzReader
from hmr.training.config import load_train_config
from hmr.training.module import MeshRecoveryModule

TINY = ["model.overrides={backbone: {depth: 1, embed_dim: 64, num_heads: 2, drop_path_rate: 0.0}, head: {depth: 1, "
        "context_dim: 64, dim: 128, heads: 2, dim_head: 32, mlp_dim: 128}}", "optim.optimizer=sgd", "optim.weight_decay=0",
        "loss.keypoints_3d=0.05", "loss.adversarial=0"]
LR = 1e-2  # large enough that any difference in the batches shows far above the tolerance
STEPS, PER_RANK = 3, 2


class FixedBatches(torch.utils.data.IterableDataset):
    def __init__(self, samples, ddp):
        self.samples, self.ddp = samples, ddp

    def __iter__(self):
        rank = torch.distributed.get_rank() if self.ddp else 0
        for s in range(STEPS):
            step = self.samples[s * 2 * PER_RANK : (s + 1) * 2 * PER_RANK]
            yield collate(step[rank * PER_RANK : (rank + 1) * PER_RANK] if self.ddp else step)


def main(mode: str, npz: str, out: str) -> None:
    ddp = mode == "ddp"
    L.seed_everything(0, verbose=False)
    module = MeshRecoveryModule(load_train_config("hmr2_vit_s", [*TINY, f"optim.lr={LR:.10f}"]))
    samples = list(SampleDataset(NpzReader(npz), 256))
    assert len(samples) >= STEPS * 2 * PER_RANK, len(samples)
    loader = torch.utils.data.DataLoader(FixedBatches(samples, ddp), batch_size=None)
    trainer = L.Trainer(accelerator="cpu", devices=2 if ddp else 1, strategy="ddp" if ddp else "auto",
                        max_steps=STEPS, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        use_distributed_sampler=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(module, loader)
    if trainer.global_rank == 0:
        torch.save(module.model.state_dict(), out)


if __name__ == "__main__":
    main(*sys.argv[1:4])
