"""BatchSchedule against values worked out by hand, and the config keys that build it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pythia_repro.config import ConfigError, Suite, validate_config
from pythia_repro.data.batch_schedule import BatchSchedule
from pythia_repro.errors import PythiaReproError

# 2 sequences for steps 0-2, 4 for steps 3-4, 8 from step 5 on.
RAMP = BatchSchedule(8, ((3, 2), (5, 4)))
# samples_before(t) by hand: 0, +2, +2, +2, +4, +4, +8, +8.
BEFORE = [0, 2, 4, 6, 10, 14, 22, 30]


def test_ramp_sizes_and_samples_before_by_hand() -> None:
    assert [RAMP.batch_size(t) for t in range(8)] == [2, 2, 2, 4, 4, 8, 8, 8]
    assert [RAMP.samples_before(t) for t in range(8)] == BEFORE
    assert RAMP.samples_before(np.arange(8)).tolist() == BEFORE
    assert RAMP.sizes == (2, 4, 8) and RAMP.smallest == 2
    assert str(RAMP) == "2 until step 3, 4 until step 5, then 8"


def test_step_of_inverts_samples_before_for_every_sample() -> None:
    expected = [(t, p) for t in range(7) for p in range(BEFORE[t + 1] - BEFORE[t])]
    assert [RAMP.step_of(j) for j in range(30)] == expected
    steps, positions = RAMP.step_of(np.arange(30))
    assert list(zip(steps.tolist(), positions.tolist(), strict=True)) == expected
    assert RAMP.step_of(30) == (7, 0) and RAMP.step_of(38 + 8 * 10 + 3) == (8 + 10, 3)  # past the end: size 8


def test_constant_schedule_is_gpt_neox_arithmetic() -> None:
    pythia = BatchSchedule.constant(1024)
    assert pythia.samples_before(143_000) == 146_432_000
    assert pythia.num_samples(143_000) == 147_164_160  # Pythia's index maps: ceil(143000 x 1024 x 1.005)
    assert pythia.step_of(1_000_000) == divmod(1_000_000, 1024)
    assert RAMP.num_samples(8) == math.ceil(38 * 1.005) == 39


def test_palm_540b_ramp() -> None:
    palm = BatchSchedule(2048, ((50_000, 512), (115_000, 1024)))
    # 512 x 50k + 1024 x 65k = 92,160,000 samples before step 115k; 2048 x 140k after it.
    assert palm.samples_before(115_000) == 92_160_000
    assert palm.samples_before(255_000) == 378_880_000  # x 2048 tokens = 775.9B
    assert palm.step_of(25_600_000) == (50_000, 0) and palm.step_of(25_599_999) == (49_999, 511)


@pytest.mark.parametrize(("ramp", "message"), [
    (((3, 2), (3, 4)), r"batch_ramp\[1\].until_step: 3 must be greater than the previous entry's 3"),
    (((0, 2),), r"batch_ramp\[0\].until_step: 0 must be greater than 0"),
    (((2, 0),), r"batch_ramp\[0\].global_batch_size: 0 must be at least 1"),
])
def test_bad_ramps_are_refused(ramp, message) -> None:
    with pytest.raises(PythiaReproError, match=message):
        BatchSchedule(8, ramp)
    with pytest.raises(PythiaReproError, match="steps count from 0"):
        RAMP.samples_before(-1)


def _suite(training: dict) -> Suite:
    """A suite of 8 steps of 8 sequences (micro-batches of 2 unless `training` says otherwise)."""
    training = {"train_iters": 8, "global_batch_size": 8, "micro_batch_size": 2, **training}
    raw = {"suite": "s", "results_dir": "/tmp/unused", "corpus": {"source": "synthetic"},
           "tokenizer": {"source": "train"}, "data": {"seq_length": 16},
           "models": [{"size": "70m", "data": ["standard"]}],
           "training": {k: v for k, v in training.items() if v is not None}}
    return Suite(validate_config(raw, "ramp.yaml"), source="ramp.yaml")


def test_config_builds_the_schedule_and_derives_from_it() -> None:
    ramp = [{"until_step": 3, "global_batch_size": 2}, {"until_step": 5, "global_batch_size": 4}]
    suite = _suite({"batch_ramp": ramp})
    assert suite.batch_schedule == RAMP
    assert suite.num_samples == 39 and suite.tokens_seen(5) == 14 * 16
    assert _suite({}).batch_schedule == BatchSchedule.constant(8) and _suite({}).num_samples == math.ceil(64 * 1.005)
    # Without micro_batch_size a rank's micro-batch is the smallest batch's share.
    assert _suite({"batch_ramp": [{"until_step": 3, "global_batch_size": 4}], "micro_batch_size": None,
                   "ranks": 2}).training.micro_batch == 2


@pytest.mark.parametrize(("training", "message"), [
    ({"batch_ramp": [{"until_step": 9, "global_batch_size": 4}]},
     r"^ramp.yaml: training.batch_ramp\[0\].until_step: 9 is past training.train_iters 8$"),
    ({"batch_ramp": [{"until_step": 4, "global_batch_size": 4}, {"until_step": 2, "global_batch_size": 4}]},
     r"^ramp.yaml: training.batch_ramp\[1\].until_step: 2 must be greater than the previous entry's 4$"),
    ({"batch_ramp": [{"until_step": 4, "global_batch_size": 3}]},
     r"^ramp.yaml: training.micro_batch_size: 2 per rank x 1 ranks does not divide "
     r"training.batch_ramp\[0\].global_batch_size 3$"),
    ({"batch_ramp": [{"until_step": 4, "global_batch_size": 2}], "micro_batch_size": None, "ranks": 4},
     r"^ramp.yaml: training.batch_ramp\[0\].global_batch_size: 2 does not split evenly over training.ranks 4"),
    ({"batch_ramp": [{"until_step": 4}]}, r"training.batch_ramp\[0\]: 'global_batch_size' is a required property"),
])
def test_config_ramp_errors_name_file_and_key(training, message) -> None:
    with pytest.raises(ConfigError, match=message):
        _suite(training)
