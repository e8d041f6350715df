"""Hand-worked cases for every benchmark metric."""

import pytest

from vigil.bench.metrics import EventCounts, event_counts, f_beta


def test_event_rule_counts_each_label_once_and_unmatched_predictions_as_fp():
    # Two predictions hit the same labelled sequence: one TP, no FP.
    c = event_counts([(10, 12), (15, 16), (50, 55)], [(11, 20)], n_samples=100)
    assert (c.tp, c.fp, c.fn) == (1, 1, 0)


def test_unmatched_label_is_fn_and_touching_counts_as_overlap():
    c = event_counts([(20, 20)], [(0, 5), (20, 30)], n_samples=40)
    assert (c.tp, c.fp, c.fn) == (1, 0, 1)


def test_delay_is_samples_from_label_start_to_first_detection():
    # Label starts at 100; first overlapping prediction starts at 107 -> delay 7.
    # Second label is entered by a prediction opened before it -> delay 0.
    c = event_counts([(107, 110), (195, 205)], [(100, 150), (200, 210)], n_samples=300)
    assert c.delays == (7, 0)
    assert c.median_delay == 3.5


def test_precision_recall_f05_by_hand():
    c = EventCounts(tp=84, fp=12, fn=21)
    assert c.precision == pytest.approx(84 / 96)
    assert c.recall == pytest.approx(84 / 105)
    # telemanom's published P=0.875, R=0.8 -> F0.5 = 1.25*0.7/(0.21875+0.8) = 0.8589...
    assert c.f05 == pytest.approx(0.8589, abs=1e-4)


def test_esa_f05_multiplies_precision_by_time_tnr():
    # 100 samples, label [40, 49] (10 positives, 90 negatives); prediction [30, 69] flags 30 negatives.
    c = event_counts([(30, 69)], [(40, 49)], n_samples=100)
    assert (c.tp, c.fp, c.fn) == (1, 0, 0)
    assert c.negatives == 90 and c.true_negatives == 60
    corrected_precision = 1.0 * 60 / 90
    expected = 1.25 * corrected_precision * 1.0 / (0.25 * corrected_precision + 1.0)
    assert c.esa_f05 == pytest.approx(expected)
    assert c.f05 == pytest.approx(1.0)


def test_counts_add_across_channels():
    a = event_counts([(0, 1)], [(0, 3)], n_samples=10)
    b = event_counts([(5, 6)], [], n_samples=10)
    total = a + b
    assert (total.tp, total.fp, total.fn) == (1, 1, 0)
    assert total.negatives == 6 + 10
    assert total.true_negatives == 6 + 8
    assert total.precision == 0.5


def test_empty_cases():
    c = event_counts([], [], n_samples=5)
    assert (c.precision, c.recall, c.f05, c.tnr, c.median_delay) == (0.0, 0.0, 0.0, 1.0, None)
    assert f_beta(0.0, 0.0, 0.5) == 0.0
