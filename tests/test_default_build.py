"""The README's main job, for real: the article's schedule on the bundled shapes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_default_build_matches_the_article(tmp_path):
    """20 epochs of 100 steps, best epoch kept: at least the article's 95% on the test set."""
    (tmp_path / "data").symlink_to(REPO / "data", target_is_directory=True)
    result = subprocess.run([sys.executable, "-m", "reportgen", "build"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    sidecar = json.loads((tmp_path / "output/model/model.reportgen.json").read_text())
    history = sidecar["history"]
    assert history["epochs"] == 20 and len(history["val_accuracy"]) == 20
    assert max(history["val_accuracy"]) >= 0.95
    assert history["val_accuracy"][history["best_epoch"] - 1] == max(history["val_accuracy"])
    assert sidecar["class_names"] == ["circles", "squares", "triangles"]
    assert sidecar["input"] == {"height": 28, "width": 28, "channels": 3, "resize": "stretch"}
    assert sidecar["preprocess"] == "unit"
    report = json.loads((tmp_path / "output/site/report.json").read_text())
    assert report["input"]["preprocess"] == "unit" and "sidecar" in report["input"]["reason"]
    assert "fed the wrong input" not in result.stderr  # a good build stays silent
    # the restored best epoch's validation accuracy is the test accuracy the site reports
    assert report["metrics"]["accuracy"] == pytest.approx(max(history["val_accuracy"]), abs=1e-6)
    assert len(report["images"]) == 90
    # The article's 12 feature-map layers are listed; its 3 dropouts (the identity at
    # inference) are not shown.
    assert [layer["path"] for layer in report["feature_layers"]][:4] == [
        "block1_conv1", "block1_conv2", "block1_pool", "block2_conv1"]
    assert len(report["feature_layers"]) == 9
    hidden = [layer["path"] for layer in report["layer_plan"]["layers"] if not layer["shown"]]
    assert len(report["layer_plan"]["layers"]) == 12 and all("dropout" in p for p in hidden)
    assert len(hidden) == 3
    # a second build reuses the trained model instead of training again
    again = subprocess.run([sys.executable, "-m", "reportgen", "build"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "Reusing the model" in again.stderr and "epoch   1/20" not in again.stderr
