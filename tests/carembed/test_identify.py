"""The identification vote and its calibration against hand-computed answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from carembed.identify import Calibration, Mapping, Neighbour, identify
from training.identification import (
    Labels,
    expected_calibration_error,
    fit_isotonic,
    leave_one_out,
)


def test_the_vote_weighs_neighbours_by_softmax_of_their_scores() -> None:
    near = [
        Neighbour("Audi TT 2012", "Audi", "TT", 2012, 0.9),
        Neighbour("BMW M3 2012", "BMW", "M3", 2012, 0.85),
        Neighbour("Audi TT 2012", "Audi", "TT", 2012, 0.8),
        Neighbour("Audi R8 2010", "Audi", "R8", 2010, 0.7),
    ]
    # The R8 is the 4th: it votes for the make only (make_k 4).
    calibration = Calibration(k=3, temperature=0.1, make_k=4, make_temperature=0.1)
    found = identify(near, calibration)
    w = [math.exp(0.0), math.exp(-0.5), math.exp(-1.0)]  # exp((s - 0.9) / 0.1)
    audi = (w[0] + w[2]) / sum(w)
    assert [c.class_name for c in found.candidates] == ["Audi TT 2012", "BMW M3 2012"]
    assert found.candidates[0].share == pytest.approx(audi)
    assert found.candidates[1].share == pytest.approx(w[1] / sum(w))
    assert found.candidates[0].confidence == pytest.approx(audi)  # uncalibrated: the share
    w4 = [*w, math.exp(-2.0)]
    audi_make = (w4[0] + w4[2] + w4[3]) / sum(w4)
    assert (found.make, found.make_share, found.calibrated) == (
        "Audi",
        pytest.approx(audi_make),
        False,
    )
    fitted = Calibration(
        k=3,
        temperature=0.1,
        make_k=4,
        make_temperature=0.1,
        model=Mapping(x=[0, 1], y=[0, 0.5]),
        make=Mapping(),
        fitted=True,
    )
    assert identify(near, fitted).candidates[0].confidence == pytest.approx(audi / 2)
    assert identify([], fitted).candidates == []


def test_isotonic_fit_pools_adjacent_violators() -> None:
    mapping = fit_isotonic(np.array([0.1, 0.2, 0.3, 0.4]), np.array([1, 0, 0, 1]))
    assert mapping.x == pytest.approx([0.0, 0.2, 0.4, 1.0])
    assert mapping.y == pytest.approx([1 / 3, 1 / 3, 1.0, 1.0])
    assert mapping(0.3) == pytest.approx((1 / 3 + 1) / 2)


def test_expected_calibration_error_by_hand() -> None:
    conf = np.array([0.95, 0.95, 0.55, 0.55])
    right = np.array([1, 0, 1, 1])
    assert expected_calibration_error(conf, right) == pytest.approx(0.45 * 0.5 + 0.45 * 0.5)


def test_classes_in_the_gallery_are_identified_leave_one_out() -> None:
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((6, 32))
    classes = np.repeat(np.arange(6), 5)
    vectors = centres[classes] + 0.3 * rng.standard_normal((30, 32))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    makes = ["Audi", "Audi", "BMW", "BMW", "Kia", "Kia"]
    labels = Labels(
        [f"class{c}" for c in classes],
        [makes[c] for c in classes],
        [f"model{c}" for c in classes],
        [2012] * 30,
    )
    answers = leave_one_out(vectors, labels, Calibration(k=4, temperature=0.05, make_k=4))
    assert answers.top1["make_model_year"].all() and answers.top1["make"].all()
    assert (answers.model_share > 0.5).all()
