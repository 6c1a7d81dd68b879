"""course_lib.device: device choice and seeding."""

import random

import numpy as np
import pytest
import torch

from course_lib import get_device, set_seed


def test_default_device_is_available(monkeypatch):
    monkeypatch.delenv("COURSE_DEVICE", raising=False)
    device = get_device()
    assert isinstance(device, torch.device)
    expected = "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "cpu")
    assert device.type == expected
    torch.ones(2, device=device)  # usable


def test_env_and_prefer(monkeypatch):
    monkeypatch.setenv("COURSE_DEVICE", "cpu")
    assert get_device() == torch.device("cpu")
    assert get_device(torch.device("cpu")) == torch.device("cpu")
    monkeypatch.setenv("COURSE_DEVICE", "tpu")
    with pytest.raises(ValueError, match="COURSE_DEVICE"):
        get_device()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised where CUDA is absent")
def test_unavailable_device_is_a_clear_error():
    with pytest.raises(ValueError, match="not available"):
        get_device("cuda")


def test_prefer_type_error():
    with pytest.raises(TypeError, match="prefer"):
        get_device(3)


def test_set_seed_makes_every_generator_repeat():
    set_seed(123)
    first = (random.random(), np.random.rand(), torch.rand(3))
    set_seed(123)
    second = (random.random(), np.random.rand(), torch.rand(3))
    assert first[0] == second[0] and first[1] == second[1] and torch.equal(first[2], second[2])
    set_seed(124)
    assert not torch.equal(torch.rand(3), first[2])


@pytest.mark.parametrize("bad, error", [(-1, ValueError), (1.5, TypeError), ("1", TypeError), (True, TypeError),
                                        (2**64, ValueError), (2**70, ValueError), (np.bool_(True), TypeError)])
def test_set_seed_rejects_bad_seeds(bad, error):
    with pytest.raises(error, match=r"seed must be an int in \[0, 2\*\*64\)"):
        set_seed(bad)


@pytest.mark.parametrize("seed", [0, 2**32, 2**64 - 1, np.int64(7), np.uint64(2**64 - 1)])
def test_set_seed_accepts_the_whole_range(seed):
    set_seed(seed)
    first = torch.rand(2)
    torch.manual_seed(int(seed))
    assert torch.equal(torch.rand(2), first)  # set_seed seeded torch with exactly this seed
