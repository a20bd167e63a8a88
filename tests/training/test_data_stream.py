"""Exact resume when ``epoch_length`` differs from ``len(dataloader)`` (the demo's short schedule:
36 iterations per epoch over a 24-batch loader), where ignite carries one data iterator across epochs.

Synthetic data: sample ``i`` is the feature vector ``[i, 1, -i]``; the batches record their indices.
"""
from __future__ import annotations

import pytest
import torch
from ignite.engine import Events
from monai.engines import SupervisedTrainer

from svseg.training import AtomicCheckpointSaver, CheckpointResumer, ResumableSampler, data_stream_position


class Indexed(torch.utils.data.Dataset):
    def __len__(self):
        return 10

    def __getitem__(self, i):
        return {"image": torch.tensor([float(i), 1.0, -float(i)]), "label": torch.tensor([float(i % 3)]), "index": i}


def _run(out, max_epochs=4, stop_at=None, resume=False):
    torch.manual_seed(0)
    data = Indexed()
    sampler = ResumableSampler(data, shuffle=True, seed=3)
    loader = torch.utils.data.DataLoader(data, batch_size=2, sampler=sampler)  # 5 batches
    net = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    handlers = [CheckpointResumer(output_dir=out, network=net, optimizer=opt, resume="auto" if resume else False),
                AtomicCheckpointSaver(output_dir=out, network=net, optimizer=opt, save_interval=1)]
    trainer = SupervisedTrainer(device=torch.device("cpu"), max_epochs=max_epochs, epoch_length=7,
                                train_data_loader=loader, network=net, optimizer=opt,
                                loss_function=torch.nn.MSELoss(), train_handlers=handlers)
    seen = []

    @trainer.on(Events.ITERATION_COMPLETED)
    def record(engine):
        batch = engine.state.batch
        seen.append([int(d["index"]) for d in batch] if isinstance(batch, list) else [int(i) for i in batch["index"]])

    @trainer.on(Events.ITERATION_COMPLETED | Events.EPOCH_COMPLETED)
    def stop(engine):  # after the saver: at an epoch end, once its epoch-end checkpoint is written
        at_epoch_end = engine.state.iteration % 7 == 0
        event_is_epoch_end = engine.last_event_name == Events.EPOCH_COMPLETED
        if stop_at is not None and engine.state.iteration == stop_at and at_epoch_end == event_is_epoch_end:
            engine.terminate()

    trainer.run()
    return seen, {k: v.clone() for k, v in net.state_dict().items()}


def test_data_stream_position():
    # 24 batches per pass, 36 iterations per epoch (the demo)
    assert [data_stream_position(i, 36, 24) for i in (0, 12, 24, 36, 48, 72, 108, 143)] == [
        (1, 0), (1, 12), (1, 0), (1, 12), (2, 0), (3, 0), (3, 12), (4, 23)]
    assert data_stream_position(50, 10, 10) == (6, 0)
    with pytest.raises(ValueError):
        data_stream_position(3, 0, 5)


@pytest.mark.parametrize("stop_at", [7, 9, 10, 14, 21])  # epoch ends inside a pass, mid-pass, pass ends
def test_resume_with_epoch_length_unlike_the_loader_is_exact(tmp_path, stop_at):
    full, full_weights = _run(tmp_path / "full")
    first, _ = _run(tmp_path / "cut", stop_at=stop_at)
    assert first == full[:stop_at]
    rest, weights = _run(tmp_path / "cut", resume=True)
    assert first + rest == full, f"resumed at iteration {stop_at}: other batches than the uninterrupted run"
    for k in full_weights:
        torch.testing.assert_close(weights[k], full_weights[k], rtol=0, atol=0)
