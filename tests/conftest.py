import os

import pytest
import torch

# OMP_NUM_THREADS, when set, wins (a busy machine runs faster with fewer threads)
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", 0)) or max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def samples():
    """Real sample clips and stills from DATA.md (fetched into the cache on first use)."""
    from facevid2vid.data.fetch import fetch_samples

    return fetch_samples()


@pytest.fixture(scope="module")
def one_thread():
    """Small models on a shared 2-core machine: one intra-op thread avoids spin-waiting on a busy peer."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
