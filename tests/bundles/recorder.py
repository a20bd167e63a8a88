"""Test-only ignite handler: records which training slices each DDP rank consumed (used by test_ddp.py)."""
from __future__ import annotations

import json
import os


class BatchRecorder:
    """Append ``(epoch, case, slice)`` of every training sample to ``<output_dir>/samples_rank<r>.json``."""

    def __init__(self, output_dir: str) -> None:
        self.output_dir = output_dir
        self.samples: list = []

    def attach(self, engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.ITERATION_COMPLETED, self.record)
        engine.add_event_handler(Events.COMPLETED, self.write)

    def record(self, engine) -> None:
        batch = engine.state.batch
        if isinstance(batch, dict):  # collated batch
            pairs = zip(batch["case"], batch["slice"])
        else:  # MONAI decollates the batch into a list of sample dicts
            pairs = ((d["case"], d["slice"]) for d in batch)
        for c, s in pairs:
            self.samples.append([int(engine.state.epoch), str(c), int(s)])

    def write(self, engine) -> None:
        import torch.distributed as dist

        rank = dist.get_rank() if dist.is_initialized() else 0
        world = dist.get_world_size() if dist.is_initialized() else 1
        os.makedirs(self.output_dir, exist_ok=True)
        with open(os.path.join(self.output_dir, f"samples_rank{rank}.json"), "w") as f:
            json.dump({"rank": rank, "world_size": world, "samples": self.samples}, f)
