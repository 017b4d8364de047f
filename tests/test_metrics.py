"""OPE metrics (mlt_plugin.metrics): values by hand, and agreement with got10k's implementation."""
import numpy as np
import pytest

from mlt_plugin import metrics


def test_iou_by_hand():
    a = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]], float)
    b = np.array([[0, 0, 10, 10], [5, 0, 10, 10], [20, 20, 5, 5], [0, 0, 0, 10]], float)
    np.testing.assert_allclose(metrics.iou(a, b), [1.0, 50 / 150, 0.0, 0.0])
    assert metrics.iou([0, 0, 4, 4], [2, 2, 4, 4]) == pytest.approx(4 / 28)
    assert np.isnan(metrics.iou([np.nan, 0, 1, 1], [0, 0, 1, 1]))
    with pytest.raises(ValueError):
        metrics.iou(np.zeros((2, 4)), np.zeros((3, 4)))
    with pytest.raises(ValueError):
        metrics.iou(np.zeros((2, 3)), np.zeros((2, 3)))


def test_center_errors_by_hand():
    assert metrics.center_error([0, 0, 10, 10], [3, 4, 10, 10]) == pytest.approx(5.0)
    # centres (5, 5) and (8, 14); the offset (3, 9) in units of the ground truth's 10 x 20 box: (0.3, 0.45)
    assert metrics.normalized_center_error([0, 0, 10, 10], [3, 4, 10, 20]) == pytest.approx(np.hypot(0.3, 0.45))
    assert metrics.normalized_center_error([0, 0, 10, 10], [0, 0, 0, 10]) == np.inf


def test_curves_and_scores_by_hand():
    ious = np.array([0.0, 0.5, 1.0, np.nan])
    curve = metrics.success_curve(ious)
    assert curve.shape == (21,)
    assert curve[0] == 0.5  # IoU > 0: 0.5 and 1.0; NaN is a failure
    assert curve[10] == 0.25  # > 0.5 is strict
    assert curve[20] == 0.0  # nothing is > 1
    assert metrics.auc(curve) == pytest.approx(curve.mean())
    assert metrics.success_auc(ious) == pytest.approx(curve.mean())
    errors = np.array([0.0, 20.0, 20.5, np.inf])
    assert metrics.precision_at(errors, 20) == 0.5  # <= 20 counts
    assert metrics.precision_curve(errors)[20] == 0.5
    assert metrics.normalized_precision(np.zeros(5)) == 1.0
    assert metrics.normalized_precision(np.full(5, np.inf)) == 0.0
    assert metrics.average_overlap([0.2, 0.4, np.nan]) == pytest.approx(0.2)
    with pytest.raises(ValueError):
        metrics.success_curve([])


def test_mean_of_success_curve_tends_to_average_overlap():
    ious = np.random.default_rng(0).uniform(0, 1, 500)
    fine = metrics.success_auc(ious, np.linspace(0, 1, 2001))
    assert fine == pytest.approx(metrics.average_overlap(ious), abs=2e-3)
    assert abs(metrics.success_auc(ious) - metrics.average_overlap(ious)) < 0.05  # 21 thresholds


def test_sequence_errors_invalid_frames_fail_and_stay_in_denominator():
    gt = np.array([[10, 10, 20, 20]] * 4, float)
    gt[2, 2] = 0  # no valid box
    pred = np.array([[50, 50, 5, 5], [10, 10, 20, 20], [10, 10, 20, 20], [np.nan] * 4])
    valid = np.array([True, True, True, False])  # frame 3: target absent
    ious, errors, norm = metrics.sequence_errors(pred, gt, valid)
    np.testing.assert_allclose(ious, [1.0, 1.0, -1.0, -1.0])  # frame 0 replaced by the ground truth
    assert errors[2] == np.inf and errors[3] == np.inf and norm[3] == np.inf
    summary = metrics.ope_summary(pred, gt, valid)
    assert summary["success_score"] == pytest.approx(0.5 * 20 / 21)  # 2 of 4 frames succeed below IoU 1
    assert summary["precision_score"] == 0.5 and summary["frames"] == 4
    # An invalid prediction row takes the previous one.
    ious, _, _ = metrics.sequence_errors(pred, gt)
    assert ious[3] == pytest.approx(1.0)


def test_agrees_with_got10k():
    got10k_metrics = pytest.importorskip("got10k.utils.metrics")
    from got10k.experiments import ExperimentOTB

    rng = np.random.default_rng(1)
    gt = np.column_stack([rng.uniform(0, 100, 200), rng.uniform(0, 100, 200), rng.uniform(5, 50, (200, 2))])
    pred = gt + rng.normal(0, 8, gt.shape)
    pred[:, 2:] = np.abs(pred[:, 2:]) + 1
    ours_iou, theirs_iou = metrics.iou(pred, gt), got10k_metrics.rect_iou(pred.copy(), gt.copy())
    np.testing.assert_allclose(ours_iou, theirs_iou, atol=1e-9)
    errors = metrics.center_error(pred, gt)
    np.testing.assert_allclose(errors, got10k_metrics.center_error(pred, gt), atol=1e-9)
    experiment = ExperimentOTB.__new__(ExperimentOTB)
    experiment.nbins_iou, experiment.nbins_ce = 21, 51
    succ, prec = experiment._calc_curves(theirs_iou, errors)
    np.testing.assert_allclose(metrics.success_curve(ours_iou), succ)
    np.testing.assert_allclose(metrics.precision_curve(errors), prec)
    assert metrics.auc(metrics.success_curve(ours_iou)) == pytest.approx(np.mean(succ))  # got10k success_score


def test_paired_difference_interval_over_sequences():
    """The paired bootstrap: the mean of per-sequence differences, an interval around it that collapses when
    every sequence differs alike and widens when one sequence carries the whole difference."""
    from mlt_plugin.evaluation.statistics import differences, paired_difference

    def perf(a, b):
        return {name: {"overall": {}, "seq_wise": {f"s{i}": {"success_score": v} for i, v in enumerate(values)}}
                for name, values in (("base", a), ("new", b))}

    same_shift = paired_difference(perf([0.2, 0.5, 0.7, 0.4], [0.25, 0.55, 0.75, 0.45]), "new", "base")
    assert same_shift["success_score"] == pytest.approx(0.05)
    assert same_shift["ci95"] == pytest.approx([0.05, 0.05]) and same_shift["sequences"] == 4
    one_sequence = paired_difference(perf([0.5] * 8, [0.5] * 7 + [0.9]), "new", "base")
    assert one_sequence["success_score"] == pytest.approx(0.05)
    low, high = one_sequence["ci95"]
    assert low == 0 and high > 0.1  # the 0.05 gain may well be none: 7 of 8 sequences did not move
    report = perf([0.2, 0.5], [0.3, 0.6])
    assert "new minus base: +0.100 [+0.100, +0.100]" in differences(report)
    assert report["new"]["overall"]["paired_difference"]["success_score"]["base"]["baseline"] == "base"
