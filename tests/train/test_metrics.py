import json
import math

import pytest
import torch

from image2point.train.metrics import ConfusionMatrix

IGNORE = -100


def _three_class_example() -> ConfusionMatrix:
    # Counted by hand, rows = target, columns = prediction:
    #   target 0: predicted 0, 0, 1       -> [2, 1, 0]
    #   target 1: predicted 1, 2          -> [0, 1, 1]
    #   target 2: predicted 2, 2, 0, 2    -> [1, 0, 3]
    # The last point is ignored.
    matrix = ConfusionMatrix(3, ignore_index=IGNORE, class_names=["chair", "table", "sofa"])
    target = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, IGNORE])
    pred = torch.tensor([0, 0, 1, 1, 2, 2, 2, 0, 2, 1])
    # Two batches of different shapes accumulate into one matrix.
    matrix.update(pred[:4].reshape(2, 2), target[:4].reshape(2, 2))
    matrix.update(pred[4:], target[4:])
    return matrix


def test_three_class_example_matches_hand_computation():
    metrics = _three_class_example().compute()
    assert metrics.confusion.tolist() == [[2, 1, 0], [0, 1, 1], [1, 0, 3]]
    # 6 of 9 counted points are right.
    assert metrics.overall_accuracy == pytest.approx(6 / 9)
    # Per class: 2/3, 1/2, 3/4.
    assert metrics.class_accuracy == pytest.approx((2 / 3, 1 / 2, 3 / 4))
    assert metrics.mean_class_accuracy == pytest.approx((2 / 3 + 1 / 2 + 3 / 4) / 3)
    # IoU = TP / (row + column - TP): 2/(3+3-2), 1/(2+2-1), 3/(4+4-3).
    assert metrics.class_iou == pytest.approx((2 / 4, 1 / 3, 3 / 5))
    assert metrics.miou == pytest.approx((1 / 2 + 1 / 3 + 3 / 5) / 3)
    assert metrics.class_names == ("chair", "table", "sofa")


def test_absent_classes_are_nan_and_left_out_of_the_means():
    matrix = ConfusionMatrix(4)
    # Class 2 is only predicted, class 3 appears nowhere.
    matrix.update(torch.tensor([0, 2, 1]), torch.tensor([0, 0, 1]))
    metrics = matrix.compute()
    assert metrics.overall_accuracy == pytest.approx(2 / 3)
    assert metrics.class_accuracy[:2] == pytest.approx((1 / 2, 1.0))
    assert math.isnan(metrics.class_accuracy[2]) and math.isnan(metrics.class_accuracy[3])
    assert metrics.class_iou[:3] == pytest.approx((1 / 2, 1.0, 0.0))
    assert math.isnan(metrics.class_iou[3])
    # Means over the classes present in the targets (0 and 1).
    assert metrics.mean_class_accuracy == pytest.approx(0.75)
    assert metrics.miou == pytest.approx(0.75)


def test_as_dict_is_strict_json_with_none_for_undefined_values():
    matrix = ConfusionMatrix(4)
    matrix.update(torch.tensor([0, 2, 1]), torch.tensor([0, 0, 1]))
    as_dict = matrix.compute().as_dict()
    decoded = json.loads(json.dumps(as_dict, allow_nan=False))
    assert decoded["class_iou"] == {"0": 0.5, "1": 1.0, "2": 0.0, "3": None}
    assert decoded["class_accuracy"]["2"] is None
    assert decoded["miou"] == pytest.approx(0.75)
    assert decoded["confusion"][0] == [1, 0, 1, 0]


def test_iou_table_is_markdown_in_percent():
    matrix = ConfusionMatrix(4, class_names=["a", "b", "c", "d"])
    matrix.update(torch.tensor([0, 2, 1]), torch.tensor([0, 0, 1]))
    assert matrix.compute().iou_table() == "\n".join(
        [
            "| class | IoU (%) | accuracy (%) |",
            "|---|---:|---:|",
            "| a | 50.00 | 50.00 |",
            "| b | 100.00 | 100.00 |",
            "| c | 0.00 | n/a |",
            "| d | n/a | n/a |",
            "| **mean** | 75.00 | 75.00 |",
        ]
    )


def test_nothing_counted_gives_undefined_metrics():
    matrix = ConfusionMatrix(2)
    matrix.update(torch.tensor([1, 0]), torch.tensor([IGNORE, IGNORE]))
    metrics = matrix.compute()
    assert math.isnan(metrics.overall_accuracy) and math.isnan(metrics.miou)
    assert metrics.as_dict()["overall_accuracy"] is None


def test_reset_clears_counts():
    matrix = _three_class_example()
    matrix.reset()
    assert int(matrix.compute().confusion.sum()) == 0


def test_target_out_of_range_names_the_value():
    matrix = ConfusionMatrix(3)
    with pytest.raises(ValueError, match=r"target value 7 is outside \[0, 3\) and is not ignore_index \(-100\)"):
        matrix.update(torch.tensor([0, 1]), torch.tensor([0, 7]))
    with pytest.raises(ValueError, match="target value -1 is outside"):
        matrix.update(torch.tensor([0]), torch.tensor([-1]))


def test_prediction_out_of_range_is_rejected():
    with pytest.raises(ValueError, match="pred value 3 is outside"):
        ConfusionMatrix(3).update(torch.tensor([3]), torch.tensor([0]))


def test_bad_inputs_are_rejected():
    matrix = ConfusionMatrix(3)
    with pytest.raises(ValueError, match="differs from target shape"):
        matrix.update(torch.tensor([0, 1]), torch.tensor([0]))
    with pytest.raises(ValueError, match="pred must hold integer class indices"):
        matrix.update(torch.tensor([0.0]), torch.tensor([0]))
    with pytest.raises(ValueError, match="2 class names given for 3 classes"):
        ConfusionMatrix(3, class_names=["a", "b"])


def test_all_reduce_without_process_group_keeps_counts():
    matrix = _three_class_example()
    matrix.all_reduce()
    assert matrix.compute().confusion.tolist() == [[2, 1, 0], [0, 1, 1], [1, 0, 3]]


def test_agrees_with_torchmetrics():
    classification = pytest.importorskip("torchmetrics.classification")
    num_classes = 5
    generator = torch.Generator().manual_seed(0)
    target = torch.randint(0, num_classes, (4, 500), generator=generator)
    # Mostly right, so the metrics are far from chance; some points ignored.
    noise = torch.randint(0, num_classes, target.shape, generator=generator)
    pred = torch.where(torch.rand(target.shape, generator=generator) < 0.6, target, noise)
    target[:, :50] = IGNORE

    ours = ConfusionMatrix(num_classes, ignore_index=IGNORE)
    ours.update(pred, target)
    metrics = ours.compute()

    def reference(metric_class, **kwargs):
        metric = metric_class(num_classes=num_classes, ignore_index=IGNORE, **kwargs)
        return metric(pred, target)

    assert torch.equal(metrics.confusion, reference(classification.MulticlassConfusionMatrix))
    assert metrics.overall_accuracy == pytest.approx(
        float(reference(classification.MulticlassAccuracy, average="micro"))
    )
    assert metrics.mean_class_accuracy == pytest.approx(
        float(reference(classification.MulticlassAccuracy, average="macro"))
    )
    assert metrics.class_iou == pytest.approx(reference(classification.MulticlassJaccardIndex, average="none").tolist())
    assert metrics.miou == pytest.approx(float(reference(classification.MulticlassJaccardIndex, average="macro")))
