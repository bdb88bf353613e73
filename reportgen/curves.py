"""Learning curves as SVG, drawn once per build with matplotlib, with deterministic bytes."""

from __future__ import annotations

import io

from reportgen.history import History

TRAIN_COLOUR = "#1f77b4"
VALIDATION_COLOUR = "#d62728"


def _svg_bytes(figure) -> bytes:
    buffer = io.StringIO()
    # No date, a fixed creator and a fixed id salt: the same history gives the same bytes.
    figure.savefig(buffer, format="svg", metadata={"Date": None, "Creator": "reportgen"})
    return buffer.getvalue().encode("utf-8")


def learning_curve_svg(history: History, metric: str) -> bytes:
    """Training vs validation ``metric`` ("accuracy" or "loss") per epoch, best epoch marked."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    epochs = list(range(1, history.epochs + 1))
    with matplotlib.rc_context({"svg.hashsalt": "reportgen", "svg.fonttype": "path",
                                "font.size": 10}):
        figure = Figure(figsize=(5.2, 3.2))
        axes = figure.add_subplot()
        train, validation = getattr(history, metric), getattr(history, "val_" + metric)
        if train:
            axes.plot(epochs, train, color=TRAIN_COLOUR, marker="o", markersize=3, label="training")
        if validation:
            axes.plot(epochs, validation, color=VALIDATION_COLOUR, marker="o", markersize=3,
                      label="validation")
        if history.best_epoch:
            axes.axvline(history.best_epoch, color="#555555", linestyle="--", linewidth=1,
                         label=f"best epoch ({history.best_epoch})")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_xlabel("epoch")
        axes.set_ylabel(metric)
        axes.set_title(f"{metric.capitalize()} per epoch")
        axes.grid(alpha=0.3)
        axes.legend(loc="best", frameon=False)
        figure.tight_layout()
        return _svg_bytes(figure)
