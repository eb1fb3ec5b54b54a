"""The order training samples are seen in: a seeded permutation per epoch, split across processes, resumable."""

from __future__ import annotations

from typing import Iterator

import numpy as np
from torch.utils.data import Sampler

SampleKey = tuple[int, int]  # (epoch, sample index): the dataset derives a sample's randomness from it
DataPosition = tuple[int, int]  # (epoch, samples of that epoch already consumed, all processes together)


def epoch_permutation(num_samples: int, seed: int, epoch: int) -> np.ndarray:
    """The same permutation on every machine and after every restart."""
    return np.random.default_rng([seed, epoch]).permutation(num_samples)


class ShardedEpochSampler(Sampler[list[SampleKey]]):
    """Yields this process's batches of sample keys, epoch after epoch, without end.

    A global batch is `batch_size * world_size` consecutive entries of the epoch's permutation; process
    `rank` takes every `world_size`-th of them, so N processes see exactly the samples one process with
    an N times larger batch would. A resume starts at (`start_epoch`, `start_sample`), counted in
    samples of all processes together, so it works for any number of processes.

    The sampler owns the data position: the DataLoader draws batches ahead of training, so the training
    loop counts the batches it has consumed and asks `position_after(n)` where the next run must start.
    """

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        seed: int,
        world_size: int = 1,
        rank: int = 0,
        start_epoch: int = 0,
        start_sample: int = 0,
    ) -> None:
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.world_size = world_size
        self.rank = rank
        self.seed = seed
        self.start_epoch = start_epoch
        self.start_sample = start_sample
        if self.global_batch_size > num_samples:
            raise ValueError(
                f"a global batch needs {self.global_batch_size} samples (batch_size {batch_size} x {world_size} "
                f"processes) but the dataset has {num_samples}; lower --batch_size or add episodes"
            )

    @property
    def global_batch_size(self) -> int:
        return self.batch_size * self.world_size

    @property
    def batches_per_epoch(self) -> int:
        return self.num_samples // self.global_batch_size  # the incomplete last batch is dropped

    def _batches_left_in(self, offset: int) -> int:
        """Global batches an epoch still yields when `offset` of its samples are consumed."""
        usable = self.batches_per_epoch * self.global_batch_size
        return max(0, (usable - offset) // self.global_batch_size)

    def position_after(self, batches: int) -> DataPosition:
        """Where the data stands after `batches` global batches from the start position (what a resume needs).

        The same arithmetic as `__iter__`: a start position that is not a multiple of this global batch
        (a checkpoint made with another number of processes) continues in steps of this global batch from
        there, and the epoch ends where no whole global batch is left.
        """
        first = self._batches_left_in(self.start_sample)
        if batches < first:
            return self.start_epoch, self.start_sample + batches * self.global_batch_size
        batches -= first  # the rest come from whole epochs that start at sample 0
        return (self.start_epoch + 1 + batches // self.batches_per_epoch,
                (batches % self.batches_per_epoch) * self.global_batch_size)

    def __iter__(self) -> Iterator[list[SampleKey]]:
        epoch, offset = self.start_epoch, self.start_sample
        while True:
            order = epoch_permutation(self.num_samples, self.seed, epoch)
            for k in range(self._batches_left_in(offset)):
                start = offset + k * self.global_batch_size
                chunk = order[start : start + self.global_batch_size]
                yield [(epoch, int(i)) for i in chunk[self.rank :: self.world_size]]
            epoch, offset = epoch + 1, 0

    def __len__(self) -> int:  # per epoch; iteration itself never ends
        return self.batches_per_epoch
