"""``ReportCallback``: the report written by ``model.fit``, with the run's own curves.

    model.fit(train_ds, validation_data=val_ds, epochs=20,
              callbacks=[ReportCallback(val_ds, "output/site")])

writes the site when ``fit`` ends (and every ``every_n_epochs`` epochs if asked) on the model
as it is then, with the learning curves of the epochs so far. A report that fails is a
warning: training goes on, and the previous site stays as it was.

Which weights: the report says which epoch's weights it describes, by comparing the model's
weights with those seen at each epoch's end. Callbacks run in the order they are given, and
``EarlyStopping(restore_best_weights=True)`` puts the best epoch's weights back in its own
``on_train_end``: place ``ReportCallback`` after it to report on those. Beside
``ModelCheckpoint(save_best_only=True)`` the model in memory has the last epoch's weights, the
file the best one's; the report names both epochs.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import replace
from pathlib import Path

from reportgen.errors import UserError
from reportgen.keras_import import keras


class ReportCallback(keras.callbacks.Callback):
    """Write a reportgen site of ``data`` at the end of ``fit`` (and every N epochs).

    ``data``: the test data as ``reportgen.build`` takes it (a ``tf.data.Dataset``, ``(x, y)``
    arrays or an image folder); ``out``: the site folder; ``options``: ``reportgen.build``'s
    (``class_names=``, ``max_channels=``, ``explain=``, ...).
    """

    def __init__(self, data, out="output/site", every_n_epochs: int | None = None, *,
                 monitor: str = "val_accuracy", verbose: bool = True, **options):
        super().__init__()
        if every_n_epochs is not None and every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be at least 1, not {every_n_epochs}")
        from reportgen.api import build_options

        build_options(out, **{k: v for k, v in options.items() if k != "class_names"})  # checked now
        self.data, self.out, self.every_n_epochs = data, Path(out), every_n_epochs
        self.monitor, self.verbose, self.options = monitor, verbose, options
        self.logs: dict[str, list[float]] = {}
        self.fingerprints: list[str] = []  # the weights at the end of each epoch
        self.reported: str | None = None  # the fingerprint of the weights last reported
        self.result = None  # the last report's reportgen.api.Result

    def on_train_begin(self, logs=None):
        self.logs, self.fingerprints, self.reported = {}, [], None

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            self.logs.setdefault(key, []).append(float(value))
        self.fingerprints.append(self._fingerprint())
        if self.every_n_epochs is not None and (epoch + 1) % self.every_n_epochs == 0:
            self._report()

    def on_train_end(self, logs=None):
        if self.reported != self._fingerprint():
            self._report()

    def _fingerprint(self) -> str:
        digest = hashlib.sha256()
        for weight in self.model.weights:
            digest.update(keras.ops.convert_to_numpy(weight).tobytes())
        return digest.hexdigest()

    def weights_description(self) -> str:
        """Which epoch's weights the model has now, in words, beside the best epoch's."""
        fingerprint = self._fingerprint()
        epochs = len(self.fingerprints)
        matching = [i + 1 for i, seen in enumerate(self.fingerprints) if seen == fingerprint]
        from reportgen.history import canonical

        series = canonical(self.logs).get(self.monitor) or []
        best = 1 + max(range(len(series)), key=lambda i: (series[i], -i)) if series else None
        if not matching:
            now = f"the model's weights when fit ended ({epochs} epochs), not those of any epoch's end"
        else:
            epoch = matching[-1]
            now = (f"the weights after epoch {epoch} of {epochs}"
                   + (" (the last)" if epoch == epochs else ""))
            if best is not None and epoch == best:
                return f"{now}, the best by {self.monitor} ({series[best - 1]:.4f})"
        if best is None:
            return now
        return (f"{now}; the best {self.monitor} was epoch {best}'s ({series[best - 1]:.4f}), "
                "kept by ModelCheckpoint(save_best_only=True) or restored by "
                "EarlyStopping(restore_best_weights=True) placed before this callback")

    def _report(self) -> None:
        from reportgen.api import build
        from reportgen.history import History, canonical

        history = None
        if any(key in canonical(self.logs) for key in ("accuracy", "val_accuracy", "loss",
                                                       "val_loss")):
            validation = ("the validation data given to model.fit" if "val_loss" in self.logs
                          else "none (no validation data given to model.fit)")
            history = History.from_keras(self.logs, validation=validation)
        fingerprint, weights = self._fingerprint(), self.weights_description()
        try:
            self.result = build(self.model, self.data, out=self.out, history=history,
                                verbose=self.verbose, model_source=f"model.fit: {weights}",
                                **self.options)
        except Exception as error:  # never stops training; UserError's line, or the error's
            what = str(error) if isinstance(error, UserError) else f"{type(error).__name__}: {error}"
            warnings.warn(f"reportgen: the report was not written ({what}); training goes on "
                          f"and {self.out} is as it was", RuntimeWarning, stacklevel=2)
            return
        self.reported = fingerprint
        self.result = replace(self.result, weights=f"Weights: {weights}.")


__all__ = ["ReportCallback"]
