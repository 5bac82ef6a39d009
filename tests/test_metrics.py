import math

import numpy as np
import pytest

from qkrum import metrics


def test_detection_hand_computed():
    # clients:      0  1  2  3  4  5  6  7
    byz = np.array([1, 1, 1, 0, 0, 0, 0, 0], bool)
    sel = np.array([0, 0, 1, 1, 1, 1, 0, 1], bool)
    # flagged byz: 0,1 -> TP=2; accepted byz: 2 -> FN=1; flagged honest: 6 -> FP=1; TN=4
    d = metrics.detection(sel, byz)
    assert (d["tp"], d["fp"], d["tn"], d["fn"]) == (2, 1, 4, 1)
    assert d["accuracy"] == pytest.approx(6 / 8)
    assert d["f1"] == pytest.approx(4 / (4 + 1 + 1))
    assert d["rejection_rate"] == pytest.approx(2 / 3)
    assert d["retention_rate"] == pytest.approx(4 / 5)


def test_paper_pattern_all_byzantine_accepted():
    # Table III "60% accuracy, F1 = 0": the f = 3 Byzantine kept, 3 honest rejected, n = 15.
    byz = np.arange(15) < 3
    sel = np.ones(15, bool)
    sel[3:6] = False
    d = metrics.detection(sel, byz)
    assert d["accuracy"] == pytest.approx(0.6) and d["f1"] == 0.0
    assert d["rejection_rate"] == 0.0 and d["retention_rate"] == pytest.approx(0.75)


def test_undefined_ratios_are_nan():
    d = metrics.detection(np.ones(4, bool), np.zeros(4, bool))
    assert d["accuracy"] == 1.0 and d["retention_rate"] == 1.0
    assert math.isnan(d["f1"]) and math.isnan(d["rejection_rate"])


def test_detection_accepts_int_masks_and_rejects_garbage():
    assert metrics.detection([1, 0], [0, 0])["tn"] == 1
    with pytest.raises(ValueError, match="same length"):
        metrics.detection(np.ones(3, bool), np.ones(4, bool))
    with pytest.raises(TypeError, match="boolean"):
        metrics.detection([0.5, 1.0], [0, 1])
    with pytest.raises(ValueError, match="1-D"):
        metrics.detection(np.ones((2, 2), bool), np.ones((2, 2), bool))
    with pytest.raises(ValueError, match="empty"):
        metrics.detection(np.ones(0, bool), np.ones(0, bool))


def test_aggregate_error():
    ref = {"a": np.array([3.0, 0.0]), "b": np.array([4.0])}
    agg = {"a": np.array([3.0, 1.0]), "b": np.array([4.0])}
    e = metrics.aggregate_error(agg, ref)
    assert e["l2"] == pytest.approx(1.0)
    assert e["relative"] == pytest.approx(1 / 5)
    assert e["cosine"] == pytest.approx(25 / (5 * np.sqrt(26)))
    z = metrics.aggregate_error(np.zeros(2), np.zeros(2))
    assert z["relative"] == 0.0 and math.isnan(z["cosine"])
    assert metrics.aggregate_error(np.ones(2), np.zeros(2))["relative"] == math.inf
    with pytest.raises(ValueError, match="structure"):
        metrics.aggregate_error({"a": np.ones(2)}, np.ones(2))
