from __future__ import annotations

import numpy as np
import pytest

from oncolabel.errors import InvalidInputError
from oncolabel.reading import simulate_reads
from oncolabel.stats import reader_study


def test_simulated_reads_follow_the_model_and_feed_the_reader_study():
    rng = np.random.default_rng(1)
    y = (rng.random(4000) < 0.2).astype(int)
    ai = np.where(y == 1, rng.random(y.size) < 0.9, rng.random(y.size) < 0.05).astype(int)
    sim = simulate_reads(y, ai, n_readers=3, sensitivity=(0.7, 0.7), specificity=(0.97, 0.97), accept_true=1.0,
                         accept_false=0.0, random_state=3)
    sens_unaided = sim.unaided[:, y == 1].mean(1)
    assert np.allclose(sens_unaided, 0.7, atol=0.05)
    # accept every true AI finding, no false one: aided sensitivity = 1 - (1-0.7)(1-0.9); specificity unchanged
    assert np.allclose(sim.aided[:, y == 1].mean(1), 1 - 0.3 * 0.1, atol=0.03)
    assert np.array_equal(sim.aided[:, y == 0], sim.unaided[:, y == 0])
    res = reader_study(y, sim.unaided, sim.aided, ai, readers=list(sim.readers))
    assert len(res.readers) == 3 and "simulated" in sim.notice and set(res.pooled) == {"unaided", "aided", "AI"}


def test_bad_input():
    with pytest.raises(InvalidInputError):
        simulate_reads([0, 1], [1])
    with pytest.raises(InvalidInputError):
        simulate_reads([0, 2], [1, 0])
