"""The identification when the gallery may lack the car's model: the absence at a prior, the
three levels, several query photos, the open-set galleries and the fit, against oracles."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from carembed.calibration import LEVELS, AbsenceFit, Calibration, Mapping
from carembed.identify import Neighbour, identify
from training.identification import Trials, fit_calibration
from training.identification_report import expected_calibration_error
from training.open_set import Labels, Pool


def _sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-z))


def test_absence_is_the_fit_s_log_odds_shifted_by_the_prior() -> None:
    near = [
        Neighbour("Audi TT 2012", "Audi", "TT", 2012, 0.6),
        Neighbour("Audi TT 2012", "Audi", "TT", 2012, 0.5),
    ]
    # Log-odds 10 x (0.7 - best): best 0.6 gives +1 (absent more likely than not at 50 %).
    fit = AbsenceFit(weights=[-10.0, 0.0, 0.0, 0.0], intercept=7.0)
    calibration = Calibration(
        k=2, make_k=2, absent=dict.fromkeys(LEVELS, fit), model=Mapping(x=[0, 1], y=[0, 0.8])
    )
    found = identify([near], calibration, prior=0.3)
    expected = _sigmoid(1.0 + math.log(0.3 / 0.7))
    for level in LEVELS:
        assert found.levels[level].absent == pytest.approx(expected)
    # Every neighbour agrees: share 1, right 0.8 when present, absence counted.
    assert found.candidates[0].confidence == pytest.approx(0.8 * (1 - expected))
    assert found.levels["exact"].confidence == pytest.approx(0.8 * (1 - expected))
    assert identify([near], calibration, prior=0.0).levels["exact"].absent == 0.0
    assert identify([near], calibration, prior=0.0).candidates[0].confidence == pytest.approx(0.8)
    certain = identify([near], calibration, prior=1.0)
    assert certain.levels["make"].absent == 1.0 and certain.candidates[0].confidence == 0.0
    # A calibration fitted before absence: no absence, confidences as they were.
    old = identify([near], calibration.model_copy(update={"absent": None}), prior=0.3)
    assert old.levels["exact"].absent is None
    assert old.candidates[0].confidence == pytest.approx(0.8)


def test_a_level_is_at_least_as_absent_as_a_coarser_one() -> None:
    near = [Neighbour("Audi TT 2012", "Audi", "TT", 2012, 0.6)]
    sure_absent = AbsenceFit(weights=[0.0, 0.0, 0.0, 0.0], intercept=5.0)
    sure_present = AbsenceFit(weights=[0.0, 0.0, 0.0, 0.0], intercept=-5.0)
    calibration = Calibration(
        k=1, make_k=1, absent={"make": sure_absent, "model": sure_present, "exact": sure_present}
    )
    found = identify([near], calibration, prior=0.5)
    assert found.levels["make"].absent == pytest.approx(_sigmoid(5.0))
    assert found.levels["model"].absent == found.levels["make"].absent
    assert found.levels["exact"].absent == found.levels["make"].absent


def test_the_model_level_names_the_model_whatever_its_year() -> None:
    """Two years of the F-150 share the vote: the model level adds them up."""
    near = [
        Neighbour("Ram C/V 2012", "Ram", "C/V", 2012, 0.80),
        Neighbour("Ford F-150 2007", "Ford", "F-150", 2007, 0.79),
        Neighbour("Ford F-150 2012", "Ford", "F-150", 2012, 0.78),
    ]
    found = identify([near], Calibration(k=3, temperature=1.0, make_k=3, make_temperature=1.0))
    w = [math.exp(s - 0.8) for s in (0.80, 0.79, 0.78)]
    assert (found.make, found.model) == ("Ford", "F-150")
    assert found.levels["model"].share == pytest.approx((w[1] + w[2]) / sum(w))
    assert found.candidates[0].class_name == "Ford F-150 2007"  # the better-voted year
    best, gap, _, agree = found.levels["model"].evidence
    assert (best, gap, agree) == (pytest.approx(0.79), pytest.approx(-0.01), pytest.approx(2 / 3))


def test_several_photos_of_one_car_vote_together() -> None:
    """Each photo's shares sum to one; the car's are their mean."""
    front = [
        Neighbour("Audi TT 2012", "Audi", "TT", 2012, 0.9),
        Neighbour("BMW M3 2012", "BMW", "M3", 2012, 0.9),
    ]
    rear = [
        Neighbour("Audi TT 2012", "Audi", "TT", 2012, 0.8),
        Neighbour("Audi TT 2012", "Audi", "TT", 2012, 0.8),
    ]
    calibration = Calibration(k=2, temperature=1.0, make_k=2, make_temperature=1.0)
    found = identify([front, rear], calibration)
    assert found.candidates[0].class_name == "Audi TT 2012"
    assert found.candidates[0].share == pytest.approx((0.5 + 1.0) / 2)
    assert found.candidates[1].share == pytest.approx(0.25)
    best, gap, _, agree = found.levels["exact"].evidence
    assert (best, gap, agree) == (pytest.approx(0.9), pytest.approx(0.0), pytest.approx(0.75))
    assert identify([front], calibration).candidates[0].share == pytest.approx(0.5)


def test_an_answer_counts_at_most_its_share_of_neighbours() -> None:
    """Three near photos of one model against one slightly nearer of another: counting one
    photo per answer, the nearer wins."""
    near = [
        Neighbour("Kia Rio 2012", "Kia", "Rio", 2012, 0.91),
        Neighbour("Kia Soul 2012", "Kia", "Soul", 2012, 0.90),
        Neighbour("Kia Soul 2012", "Kia", "Soul", 2012, 0.90),
        Neighbour("Kia Soul 2012", "Kia", "Soul", 2012, 0.90),
    ]
    every = Calibration(k=4, temperature=1.0, make_k=4)
    assert identify([near], every).candidates[0].class_name == "Kia Soul 2012"
    once = every.model_copy(update={"per_answer": 1})
    assert identify([near], once).candidates[0].class_name == "Kia Rio 2012"


def _labels() -> Labels:
    rows = [
        ("Audi A4 2010", "Audi", "A4", 2010),
        ("Audi A4 2010", "Audi", "A4", 2010),
        ("Audi A4 2012", "Audi", "A4", 2012),
        ("Audi S4 2012", "Audi", "S4", 2012),
        ("BMW M3 2012", "BMW", "M3", 2012),
        ("BMW M3 2012", "BMW", "M3", 2012),
    ]
    return Labels(*(list(column) for column in zip(*rows, strict=True)))  # type: ignore[arg-type]


def test_what_each_gallery_lacks_by_hand() -> None:
    pool = Pool(np.eye(6), _labels(), np.arange(6))
    # Present: only the lone A4 2012 and S4 lack another photo of their class (and the S4 of
    # its model).
    present = pool.absent("present")
    assert present["exact"].tolist() == [False, False, True, True, False, False]
    assert present["model"].tolist() == [False, False, False, True, False, False]
    assert not present["make"].any()
    # Without the class: an A4 of the other year keeps the model, Audi keeps the make.
    gone = pool.absent("class")
    assert gone["exact"].all()
    assert gone["model"].tolist() == [False, False, False, True, True, True]
    assert gone["make"].tolist() == [False, False, False, False, True, True]
    assert pool.absent("make")["make"].all()
    # The second A4 2010 asked about but never in the gallery: the first has no other photo.
    hidden = np.array([False, True, False, False, False, False])
    shown = Pool(np.eye(6), _labels(), np.arange(6), hidden=hidden).absent("present")
    assert shown["exact"].tolist() == [True, False, True, True, False, False]
    # Its neighbours never include the hidden photo, nor the query's left-out class.
    indices, scores = Pool(np.eye(6), _labels(), np.array([0]), hidden=hidden).nearest("class", 5)
    assert set(indices[0][scores[0] > -np.inf].tolist()) == {2, 3, 4, 5}
    # Photos 0 and 1 are one car: neither is in the gallery the other is asked against.
    cars = np.array([0, 0, 1, 2, 3, 4])
    pool = Pool(np.eye(6), _labels(), np.arange(6), cars=cars)
    assert pool.absent("present")["exact"].tolist() == [True, True, True, True, False, False]
    assert pool.absent("present")["model"].tolist() == [False, False, False, True, False, False]
    indices, scores = pool.nearest("present", 5)
    assert 1 not in indices[0][scores[0] > -np.inf].tolist()


def _synthetic(seed: int, models: int = 12) -> Pool:
    """Makes of two models, the first model in two years; 10 photos a class."""
    rng = np.random.default_rng(seed)
    rows, centres = [], []
    for m in range(models):
        make = f"Make{seed}-{m // 2}"
        base = rng.standard_normal(32)
        for year in (2010, 2012) if m % 2 == 0 else (2012,):
            centre = base + 0.6 * rng.standard_normal(32)
            for _ in range(10):
                rows.append((f"{make} M{m} {year}", make, f"M{m}", year))
                centres.append(centre)
    vectors = np.array(centres) + 0.7 * rng.standard_normal((len(centres), 32))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    labels = Labels(*(list(column) for column in zip(*rows, strict=True)))  # type: ignore[arg-type]
    return Pool(vectors, labels, np.arange(len(rows)))


def test_the_fit_tells_a_car_the_gallery_lacks_from_one_it_holds() -> None:
    calibration = fit_calibration(_synthetic(0), "synthetic")
    assert calibration.fitted and calibration.absent is not None
    trials = Trials(_synthetic(1))  # other classes than the fit's
    closed = trials.outcomes("present", calibration, 0.3)
    opened = trials.outcomes("class", calibration, 0.3)
    truth = np.concatenate([closed.absent["exact"], opened.absent["exact"]])
    absent = np.concatenate(
        [closed.absent_probability["exact"], opened.absent_probability["exact"]]
    )
    assert roc_auc_score(truth, absent) > 0.9
    assert (
        opened.absent_probability["exact"].mean() > closed.absent_probability["exact"].mean() + 0.3
    )
    # An exact answer against a gallery without the class is never right, and rarely sure.
    assert not opened.right["exact"].any()
    assert (opened.confidence["exact"] >= 0.9).mean() < 0.1
    # Known models: the confidence at prior 0 is calibrated.
    known = trials.outcomes("present", calibration, 0.0)
    assert expected_calibration_error(known.confidence["exact"], known.right["exact"]) < 0.1
