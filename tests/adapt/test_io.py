import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

import cliplab.adapt as adapt
from cliplab.errors import InputError
from cliplab.files import atomic_write


def heads(toy):
    X, y, text = toy["X"], toy["y"], toy["text"]
    yield adapt.GDA(text, logit_scale=100.0).fit(X, y, toy["X_val"], toy["y_val"])
    yield adapt.TipAdapter(text, logit_scale=100.0, search_step=(10, 5)).fit(X, y)
    yield adapt.TipAdapterF(text, logit_scale=100.0, epochs=2, search_step=(10, 5)).fit(X, y)
    yield adapt.LinearProbe(text, logit_scale=100.0, zero_shot="ensemble", C=1.0).fit(X, y)
    yield adapt.SupportSetAdapter(text, logit_scale=100.0, alpha=1.0, beta=2.0, gamma=0.5).fit(X, y)
    yield adapt.ConformalClassifier(adapt.GDA(alpha=1.0).fit(X, y), alpha=0.2, method="aps").fit(toy["X_val"], toy["y_val"])
    yield adapt.TemperatureScaling(adapt.LinearProbe(C=1.0).fit(X, y)).fit(toy["X_val"], toy["y_val"])


def test_round_trip_is_bit_identical(toy, tmp_path):
    for i, head in enumerate(heads(toy)):
        path = tmp_path / f"head{i}.cliplab"
        head.save(path)
        back = adapt.load(path)
        assert type(back) is type(head)
        assert np.array_equal(back.classes_, head.classes_)
        assert np.array_equal(back.decision_function(toy["X_test"]), head.decision_function(toy["X_test"])), type(head).__name__
        if hasattr(head, "predict_set"):
            assert np.array_equal(back.predict_set(toy["X_test"]), head.predict_set(toy["X_test"]))


def test_int_labels_round_trip(toy, tmp_path):
    y = np.searchsorted(toy["classes"], toy["y"]) * 10
    head = adapt.GDA(alpha=1.0).fit(toy["X"], y)
    head.save(tmp_path / "h.cliplab")
    back = adapt.load(tmp_path / "h.cliplab")
    assert back.classes_.dtype.kind == "i" and np.array_equal(back.predict(toy["X_test"]), head.predict(toy["X_test"]))


def test_one_class_round_trip(toy, tmp_path):
    for det in (adapt.KNNOneClass(k=3), adapt.GaussianOneClass(), adapt.HypOneClass(epochs=1)):
        det.fit(toy["X"])
        det.save(tmp_path / "d.cliplab")
        assert np.array_equal(adapt.load(tmp_path / "d.cliplab").anomaly_score(toy["X_test"]), det.anomaly_score(toy["X_test"]))


def test_errors(toy, tmp_path):
    with pytest.raises(NotFittedError):
        adapt.GDA().predict(toy["X"])
    with pytest.raises(NotFittedError):
        adapt.GDA().save(tmp_path / "x.cliplab")
    with pytest.raises(InputError, match="not found"):
        adapt.load(tmp_path / "missing.cliplab")
    atomic_write(tmp_path / "junk.cliplab", b"not a safetensors file")
    with pytest.raises(InputError, match="not a saved cliplab head"):
        adapt.load(tmp_path / "junk.cliplab")
    with pytest.raises(InputError, match="text_weights has shape"):
        adapt.TipAdapter(toy["text"][:3]).fit(toy["X"], toy["y"])
    with pytest.raises(InputError, match="were not seen"):
        adapt.ConformalClassifier(adapt.GDA(alpha=1.0).fit(toy["X"], toy["y"])).fit(toy["X"][:2], ["zzz", "class00"])


def test_class_load_reads_its_own_class_and_refuses_another(toy, tmp_path):
    head = adapt.GDA(alpha=1.0).fit(toy["X"], toy["y"])
    head.save(tmp_path / "gda.cliplab")
    back = adapt.GDA.load(tmp_path / "gda.cliplab")
    assert isinstance(back, adapt.GDA) and np.array_equal(back.predict(toy["X_test"]), head.predict(toy["X_test"]))
    with pytest.raises(InputError, match="holds a GDA, not a LinearProbe"):
        adapt.LinearProbe.load(tmp_path / "gda.cliplab")
    assert "save" in vars(adapt.io.SavableHead) and "save" not in vars(adapt.GDA)  # one method, inherited
