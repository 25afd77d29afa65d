import numpy as np
import pytest
import sklearn.metrics as skm

from cliplab.evaluate.metrics import (
    accuracy_at_k,
    classification_metrics,
    confusion_matrix,
    mean_per_class_recall,
    per_class_precision_recall,
    retrieval_metrics,
    topk_accuracies,
)

# ranks of the true class (descending score, ties -> lower class index first): 0, 1, 3, 2
LOGITS = np.array([
    [0.10, 0.50, 0.20, 0.20],   # y=1: top
    [0.30, 0.10, 0.40, 0.20],   # y=0: behind .4
    [0.10, 0.20, 0.30, 0.40],   # y=0: last
    [0.25, 0.25, 0.10, 0.40],   # y=1: behind .4 and the tied class 0
])
Y = np.array([1, 0, 0, 1])


def test_accuracy_at_k_by_hand():
    assert [accuracy_at_k(LOGITS, Y, k) for k in (1, 2, 3, 4)] == [0.25, 0.5, 0.75, 1.0]
    assert topk_accuracies(LOGITS, Y, ks=(1, 2, 5)) == {"acc1": 0.25, "acc2": 0.5}  # acc5: 5 >= 4 classes
    assert topk_accuracies(LOGITS, Y, ks=(1, 4)) == {"acc1": 0.25}
    with pytest.raises(ValueError):
        accuracy_at_k(LOGITS, Y, 0)


def test_ties_go_to_lower_index_like_argmax():
    logits = np.array([[0.5, 0.5, 0.5]] * 3)
    y = np.array([0, 1, 2])
    assert accuracy_at_k(logits, y, 1) == pytest.approx(1 / 3)   # only class 0 "wins"
    assert accuracy_at_k(logits, y, 2) == pytest.approx(2 / 3)
    rng = np.random.default_rng(1)
    tied = rng.integers(0, 3, size=(100, 6)).astype(float)        # many ties
    yy = rng.integers(0, 6, size=100)
    assert accuracy_at_k(tied, yy, 1) == pytest.approx(np.mean(tied.argmax(1) == yy))


Y_TRUE = np.array([0, 0, 1, 2, 2, 2])
Y_PRED = np.array([0, 1, 1, 2, 0, 2])


def test_confusion_and_recall_by_hand():
    np.testing.assert_array_equal(confusion_matrix(Y_TRUE, Y_PRED, 3), [[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    assert mean_per_class_recall(Y_TRUE, Y_PRED) == pytest.approx((1 / 2 + 1 + 2 / 3) / 3)
    pc = per_class_precision_recall(Y_TRUE, Y_PRED, ["a", "b", "c"])
    assert pc["a"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert pc["b"] == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1})
    assert pc["c"] == pytest.approx({"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "support": 3})
    # a class never seen nor predicted: 0/0 -> 0.0 (sklearn's default)
    assert per_class_precision_recall(Y_TRUE, Y_PRED, 4)[3] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}


def test_classification_metrics_fields():
    m = classification_metrics(LOGITS, Y, ["w", "x", "y", "z"])
    assert set(m) == {"acc1", "mean_per_class_recall", "per_class"}  # no acc5 with 4 classes
    assert m["acc1"] == 0.25
    # argmax predictions: [1, 2, 3, 3] vs [1, 0, 0, 1] -> recall class0 0/2, class1 1/2
    assert m["mean_per_class_recall"] == pytest.approx(0.25)
    assert m["per_class"]["x"]["recall"] == 0.5
    assert classification_metrics(LOGITS, np.array(["x", "w", "w", "x"]), "wxyz")["acc1"] == 0.25
    six = np.eye(6)[[0, 1, 2]]
    assert classification_metrics(six, [0, 1, 3], "abcdef")["acc5"] == 1.0
    with pytest.raises(ValueError, match="not class names"):
        classification_metrics(LOGITS, np.array(["q", "w", "w", "x"]), "wxyz")


def test_agrees_with_sklearn_on_random_data():
    rng = np.random.default_rng(0)
    n, c = 300, 7
    logits = rng.standard_normal((n, c))
    y = rng.integers(0, c, n)
    pred = logits.argmax(1)
    for k in range(1, c):
        assert accuracy_at_k(logits, y, k) == pytest.approx(skm.top_k_accuracy_score(y, logits, k=k, labels=range(c)))
    np.testing.assert_array_equal(confusion_matrix(y, pred, c), skm.confusion_matrix(y, pred, labels=range(c)))
    assert mean_per_class_recall(y, pred) == pytest.approx(skm.balanced_accuracy_score(y, pred))
    p, r, f, s = skm.precision_recall_fscore_support(y, pred, labels=range(c), zero_division=0)
    pc = per_class_precision_recall(y, pred, c)
    np.testing.assert_allclose([pc[i]["precision"] for i in range(c)], p)
    np.testing.assert_allclose([pc[i]["recall"] for i in range(c)], r)
    np.testing.assert_allclose([pc[i]["f1"] for i in range(c)], f)
    assert [pc[i]["support"] for i in range(c)] == s.tolist()


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_balanced_accuracy_with_predicted_class_absent_from_truth():
    y, pred = np.array([0, 0, 1, 1]), np.array([0, 2, 1, 2])
    assert mean_per_class_recall(y, pred) == pytest.approx(skm.balanced_accuracy_score(y, pred)) == 0.5


# Retrieval: image embeddings = identity, so score[text, image] = text_emb[text, image].
TEXT_SCORES = np.array([
    [0.35, 0.10, 0.00],   # t0 -> image 0: rank 0
    [0.20, 0.50, 0.30],   # t1 -> image 0: rank 2
    [0.40, 0.40, 0.10],   # t2 -> image 1: tied with image 0 (lower index first) -> rank 1
    [0.10, 0.20, 0.05],   # t3 -> image 2: rank 2
    [0.30, 0.20, 0.60],   # t4 -> image 2: rank 0
], np.float32)
TEXT_TO_IMAGE = [0, 0, 1, 2, 2]
# Image queries (columns): image 0 best caption t0 (.35) behind t2 (.40) -> rank 1;
# image 1 caption t2 (.40) behind t1 (.50) -> rank 1; image 2 best caption t4 (.60) -> rank 0.


def test_multi_caption_retrieval_by_hand():
    m = retrieval_metrics(np.eye(3, dtype=np.float32), TEXT_SCORES, TEXT_TO_IMAGE, ks=(1, 2, 3))
    assert m == pytest.approx({
        "image_retrieval_recall@1": 2 / 5, "image_retrieval_recall@2": 3 / 5, "image_retrieval_recall@3": 1.0,
        "text_retrieval_recall@1": 1 / 3, "text_retrieval_recall@2": 1.0, "text_retrieval_recall@3": 1.0,
    })
    assert m == retrieval_metrics(np.eye(3, dtype=np.float32), TEXT_SCORES, TEXT_TO_IMAGE, ks=(1, 2, 3), batch_size=1)


def test_retrieval_ties_and_captionless_images():
    images = np.array([[1, 0], [1, 0]], np.float32)  # identical images
    texts = np.array([[1, 0]], np.float32)           # caption of image 1; image 0 has none
    m = retrieval_metrics(images, texts, [1], ks=(1, 2))
    assert m["image_retrieval_recall@1"] == 0.0 and m["image_retrieval_recall@2"] == 1.0  # tie -> image 0 first
    assert m["text_retrieval_recall@1"] == 1.0  # only image 1 is a query


def _brute_force(img, txt, t2i, k):
    s = txt @ img.T
    order = np.argsort(-s, axis=1, kind="stable")
    i_hits = [t2i[t] in order[t, :k] for t in range(len(txt))]
    order_t = np.argsort(-s.T, axis=1, kind="stable")
    t_hits = [np.isin(order_t[j, :k], np.flatnonzero(t2i == j)).any() for j in np.unique(t2i)]
    return np.mean(i_hits), np.mean(t_hits)


def test_retrieval_matches_brute_force_and_batching():
    rng = np.random.default_rng(0)
    img = rng.standard_normal((40, 8)).astype(np.float32)
    txt = rng.standard_normal((130, 8)).astype(np.float32)
    t2i = rng.integers(0, 40, 130)
    full = retrieval_metrics(img, txt, t2i, ks=(1, 5, 10))
    for k in (1, 5, 10):
        i_r, t_r = _brute_force(img, txt, t2i, k)
        assert full[f"image_retrieval_recall@{k}"] == pytest.approx(i_r)
        assert full[f"text_retrieval_recall@{k}"] == pytest.approx(t_r)
    for b in (1, 7, 1000):
        assert retrieval_metrics(img, txt, t2i, ks=(1, 5, 10), batch_size=b) == full


def test_retrieval_validation():
    with pytest.raises(ValueError, match="text_to_image"):
        retrieval_metrics(np.eye(2), np.eye(2), [0, 2])
    with pytest.raises(ValueError, match="embeddings"):
        retrieval_metrics(np.eye(2), np.eye(3), [0, 1, 1])
