"""The identification vote and its calibration against hand-computed answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from carembed.calibration import Calibration, Mapping
from carembed.identify import Neighbour, identify
from training.identification import Trials, fit_isotonic
from training.identification_report import coverage_at_precision, expected_calibration_error
from training.open_set import Labels, Pool


def test_the_vote_weighs_neighbours_by_softmax_of_their_scores() -> None:
    near = [
        Neighbour("Audi TT 2012", "Audi", "TT", 2012, 0.9),
        Neighbour("BMW M3 2012", "BMW", "M3", 2012, 0.85),
        Neighbour("Audi TT 2012", "Audi", "TT", 2012, 0.8),
        Neighbour("Audi R8 2010", "Audi", "R8", 2010, 0.7),
    ]
    # The R8 is the 4th: it votes for the make only (make_k 4).
    calibration = Calibration(k=3, temperature=0.1, make_k=4, make_temperature=0.1)
    found = identify([near], calibration)
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
    assert identify([near], fitted).candidates[0].confidence == pytest.approx(audi / 2)
    assert identify([[]], fitted).candidates == []
    assert identify([], fitted).candidates == []


def test_the_exact_answer_is_a_model_of_the_winning_make() -> None:
    """The nearest two are one BMW model, the next three three Audi models: by models the BMW
    leads, by makes Audi. The answer is the best Audi model, the BMW follows."""
    near = [
        Neighbour("BMW X6 SUV 2012", "BMW", "X6 SUV", 2012, 0.90),
        Neighbour("BMW X6 SUV 2012", "BMW", "X6 SUV", 2012, 0.89),
        Neighbour("Audi Q7 SUV 2012", "Audi", "Q7 SUV", 2012, 0.88),
        Neighbour("Audi Q5 SUV 2012", "Audi", "Q5 SUV", 2012, 0.87),
        Neighbour("Audi S4 Sedan 2012", "Audi", "S4 Sedan", 2012, 0.86),
    ]
    calibration = Calibration(k=5, temperature=1.0, make_k=5, make_temperature=1.0)
    found = identify([near], calibration)
    w = [math.exp(s - 0.90) for s in (0.90, 0.89, 0.88, 0.87, 0.86)]
    assert found.make == "Audi" and found.make_share == pytest.approx(sum(w[2:]) / sum(w))
    names = [c.class_name for c in found.candidates]
    assert names == ["Audi Q7 SUV 2012", "BMW X6 SUV 2012", "Audi Q5 SUV 2012"]
    assert found.candidates[0].share == pytest.approx(w[2] / sum(w))
    assert found.candidates[1].share == pytest.approx((w[0] + w[1]) / sum(w))


def test_a_winning_make_without_a_voting_model_gives_its_nearest_car_unsure() -> None:
    """The make reads 4 neighbours, the exact vote 1: Audi wins the make on the 2nd to 4th,
    so the answer is the nearest Audi, with share 0."""
    near = [
        Neighbour("BMW X6 SUV 2012", "BMW", "X6 SUV", 2012, 0.9),
        Neighbour("Audi Q7 SUV 2012", "Audi", "Q7 SUV", 2012, 0.5),
        Neighbour("Audi Q5 SUV 2012", "Audi", "Q5 SUV", 2012, 0.45),
        Neighbour("Audi Q5 SUV 2012", "Audi", "Q5 SUV", 2012, 0.45),
    ]
    found = identify([near], Calibration(k=1, temperature=1.0, make_k=4, make_temperature=1.0))
    assert (found.make, found.model) == ("Audi", "Q7 SUV")
    assert [(c.class_name, c.share) for c in found.candidates] == [
        ("Audi Q7 SUV 2012", 0.0),
        ("BMW X6 SUV 2012", 1.0),
    ]


def test_coverage_at_precision_by_hand() -> None:
    confidence = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    right = np.array([1, 1, 0, 1, 1])
    # Most confident first: 1/1, 2/2, 2/3, 3/4, 4/5 right.
    assert coverage_at_precision(confidence, right, 0.95) == pytest.approx(2 / 5)
    assert coverage_at_precision(confidence, right, 0.8) == pytest.approx(1.0)
    # 1/1, 1/2, 2/3, 3/4, 3/5: the longest prefix at 70 % is the first four.
    assert coverage_at_precision(confidence, np.array([1, 0, 1, 1, 0]), 0.7) == 0.8
    assert coverage_at_precision(np.array([0.9]), np.array([0]), 0.95) == 0.0


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
    pool = Pool(vectors, labels, np.arange(30))
    answers = Trials(pool).outcomes(
        "present", Calibration(k=4, temperature=0.05, make_k=4), prior=0.0
    )
    assert answers.right["exact"].all() and answers.right["make"].all()
    assert answers.right["model"].all()
    assert (answers.evidence["exact"][:, 2] > 0.5).all()
