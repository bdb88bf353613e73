"""read_history reads every file a user may hand to --history, and refuses the rest in one line.

No TensorFlow here: these files are written by hand, byte for byte as Keras
writes them (a CSVLogger driven by Keras itself is in test_model.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reportgen.errors import UserError
from reportgen.history import History, read_history

ACCURACY = (0.5, 0.625, 0.75, 0.8125)
VAL_ACCURACY = (0.25, 0.5, 0.5, 0.375)  # the highest value twice: epochs 2 and 3
LOSS = (1.25, 1.0, 0.75, 0.5)
VAL_LOSS = (1.5, 1.25, 1.125, 1.375)
FIRST_BEST_EPOCH = 2


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def csv_text(header: str, columns: dict[str, tuple[float, ...]]) -> str:
    """A CSVLogger file: an epoch column counting from 0, then the keys in the header's order."""
    names = header.split(",")[1:]
    rows = [",".join([str(epoch), *(repr(columns[name][epoch]) for name in names)])
            for epoch in range(len(LOSS))]
    return "\n".join([header, *rows]) + "\n"


def assert_series(history: History) -> None:
    assert history.accuracy == ACCURACY
    assert history.val_accuracy == VAL_ACCURACY
    assert history.loss == LOSS
    assert history.val_loss == VAL_LOSS
    assert history.epochs == len(LOSS)


KERAS3_COLUMNS = {"accuracy": ACCURACY, "loss": LOSS, "val_accuracy": VAL_ACCURACY, "val_loss": VAL_LOSS}
KERAS2_COLUMNS = {"acc": ACCURACY, "loss": LOSS, "val_acc": VAL_ACCURACY, "val_loss": VAL_LOSS}


def test_csvlogger_file_of_keras_3(tmp_path):
    path = write(tmp_path, "log.csv", csv_text("epoch,accuracy,loss,val_accuracy,val_loss", KERAS3_COLUMNS))
    history = read_history(path)
    assert_series(history)
    assert history.best_epoch == FIRST_BEST_EPOCH
    assert "CSV" in history.validation


def test_csvlogger_file_of_keras_2_says_acc(tmp_path):
    path = write(tmp_path, "log.csv", csv_text("epoch,acc,loss,val_acc,val_loss", KERAS2_COLUMNS))
    history = read_history(path)
    assert_series(history)
    assert history.best_epoch == FIRST_BEST_EPOCH


def test_csv_rows_are_put_in_epoch_order(tmp_path):
    header, *rows = csv_text("epoch,accuracy,loss,val_accuracy,val_loss", KERAS3_COLUMNS).splitlines()
    path = write(tmp_path, "log.csv", "\n".join([header, *reversed(rows)]) + "\n")
    assert_series(read_history(path))


def test_csvlogger_file_of_a_run_without_validation(tmp_path):
    # With no validation data, CSVLogger still writes val_* columns, all "NA".
    text = "epoch,accuracy,loss,val_accuracy,val_loss\n" + "".join(
        f"{epoch},{ACCURACY[epoch]},{LOSS[epoch]},NA,NA\n" for epoch in range(len(LOSS)))
    history = read_history(write(tmp_path, "log.csv", text))
    assert history.accuracy == ACCURACY
    assert history.loss == LOSS
    assert history.val_accuracy == ()
    assert history.val_loss == ()
    assert history.best_epoch == len(LOSS)  # no validation: the best training accuracy


def test_sidecar_json_round_trips_the_history(tmp_path):
    # The sidecar's best epoch is kept as recorded, not recomputed.
    history = History(accuracy=ACCURACY, val_accuracy=VAL_ACCURACY, loss=LOSS, val_loss=VAL_LOSS,
                      best_epoch=3, validation="the test set (as in the article)")
    sidecar = {"format": "reportgen-model/1", "class_names": ["a", "b"], "history": history.to_json()}
    path = write(tmp_path, "model.reportgen.json", json.dumps(sidecar))
    assert read_history(path) == history


def test_keras_history_dict_json(tmp_path):
    logs = {name: list(values) for name, values in KERAS3_COLUMNS.items()}
    history = read_history(write(tmp_path, "history.json", json.dumps(logs)))
    assert_series(history)
    assert history.best_epoch == FIRST_BEST_EPOCH
    assert history.validation == "not recorded"


def test_json_is_recognised_by_content_not_name(tmp_path):
    logs = {name: list(values) for name, values in KERAS2_COLUMNS.items()}
    assert_series(read_history(write(tmp_path, "history.txt", json.dumps(logs))))


@pytest.mark.parametrize(("val_accuracy", "best_epoch"), [
    ((0.5,), 1),
    ((0.1, 0.9, 0.2), 2),
    ((0.7, 0.7, 0.7), 1),
    ((0.2, 0.6, 0.4, 0.6), 2),
    ((0.2, 0.3, 0.4, 0.5), 4),
])
def test_best_epoch_is_the_first_with_the_highest_val_accuracy(tmp_path, val_accuracy, best_epoch):
    losses = [1.0] * len(val_accuracy)
    logs = {"loss": losses, "val_loss": losses, "accuracy": [0.0] * len(val_accuracy),
            "val_accuracy": list(val_accuracy)}
    assert read_history(write(tmp_path, "history.json", json.dumps(logs))).best_epoch == best_epoch


def test_best_epoch_from_training_accuracy_when_there_is_no_validation(tmp_path):
    logs = {"loss": [1.0, 0.5, 0.25], "accuracy": [0.5, 0.75, 0.625]}
    assert read_history(write(tmp_path, "history.json", json.dumps(logs))).best_epoch == 2


UNUSABLE_FILES = {
    "empty CSV": ("log.csv", "", "no rows"),
    "CSV header only": ("log.csv", "epoch,accuracy,loss\n", "no rows"),
    "non-numeric CSV": ("log.csv", "epoch,accuracy,loss\n0,high,0.5\n", "not a CSVLogger file of numbers"),
    "ragged CSV": ("log.csv", "epoch,accuracy,loss\n0,0.5,0.5\n1,0.6\n", "not a CSVLogger file of numbers"),
    "CSV without known columns": ("log.csv", "epoch,f1\n0,0.5\n", "none of accuracy"),
    "invalid JSON": ("history.json", '{"loss": [1.0,', "not valid JSON"),
    "JSON list": ("history.json", "[1.0, 0.5]", "does not hold a training history"),
    "JSON without series": ("history.json", '{"f1": [0.5]}', "none of accuracy"),
    "mismatched lengths": ("history.json", '{"loss": [1.0, 0.5], "accuracy": [0.5]}',
                           "different numbers of epochs"),
    "non-numeric JSON": ("history.json", '{"loss": ["low", "lower"]}', "not a number"),
    "JSON number, not a list": ("history.json", '{"loss": 0.5}', "not a number"),
    "JSON null series": ("history.json", '{"loss": null}', "not a number"),
}


@pytest.mark.parametrize(("name", "text", "expected"), UNUSABLE_FILES.values(), ids=UNUSABLE_FILES)
def test_unusable_history_is_a_one_line_user_error(tmp_path, name, text, expected):
    path = write(tmp_path, name, text)
    with pytest.raises(UserError) as error:
        read_history(path)
    message = str(error.value)
    assert expected in message
    assert "\n" not in message


def test_missing_and_undecodable_files_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="cannot read the history file"):
        read_history(tmp_path / "absent.csv")
    binary = tmp_path / "log.csv"
    binary.write_bytes(b"\xff\xfe\x00epoch")
    with pytest.raises(UserError, match="cannot read the history file"):
        read_history(binary)


def test_the_guides_accuracy_names_are_accuracy():
    """keras-io names BinaryAccuracy "acc"; a metric class keeps its own name."""
    from reportgen.history import History

    for name in ("acc", "binary_accuracy", "sparse_categorical_accuracy"):
        history = History.from_keras({name: [0.5, 0.7], f"val_{name}": [0.6, 0.4],
                                      "loss": [1.0, 0.8]})
        assert (history.accuracy, history.val_accuracy, history.best_epoch) == ((0.5, 0.7),
                                                                               (0.6, 0.4), 1)


def test_an_alias_never_replaces_accuracy_itself():
    from reportgen.history import History

    history = History.from_keras({"accuracy": [0.9], "binary_accuracy": [0.1], "loss": [1.0]})
    assert history.accuracy == (0.9,)
