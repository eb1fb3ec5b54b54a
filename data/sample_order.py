"""The order training samples are seen in: a seeded permutation per epoch, split across processes, resumable."""

from __future__ import annotations

from typing import Iterator

import numpy as np
from torch.utils.data import Sampler

SampleKey = tuple[int, int]  # (epoch, sample index): the dataset derives a sample's randomness from it


def epoch_permutation(num_samples: int, seed: int, epoch: int) -> np.ndarray:
    """The same permutation on every machine and after every restart."""
    return np.random.default_rng([seed, epoch]).permutation(num_samples)


class ShardedEpochSampler(Sampler[list[SampleKey]]):
    """Yields this process's batches of sample keys, epoch after epoch, without end.

    A global batch is `batch_size * world_size` consecutive entries of the epoch's permutation; process
    `rank` takes every `world_size`-th of them, so N processes see exactly the samples one process with
    an N times larger batch would. A resume starts at (`start_epoch`, `start_sample`), counted in
    samples of all processes together, so it works for any number of processes.
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

    def __iter__(self) -> Iterator[list[SampleKey]]:
        epoch, offset = self.start_epoch, self.start_sample
        usable = self.batches_per_epoch * self.global_batch_size
        while True:
            order = epoch_permutation(self.num_samples, self.seed, epoch)
            for start in range(offset, usable - self.global_batch_size + 1, self.global_batch_size):
                chunk = order[start : start + self.global_batch_size]
                yield [(epoch, int(i)) for i in chunk[self.rank :: self.world_size]]
            epoch, offset = epoch + 1, 0

    def __len__(self) -> int:  # per epoch; iteration itself never ends
        return self.batches_per_epoch
