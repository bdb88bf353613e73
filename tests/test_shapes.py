"""The bundled shapes dataset: layout, determinism, the look of the drawings, safe writing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from reportgen import shapes
from reportgen.cli import main
from reportgen.errors import UserError

COMMITTED_DATA = Path(__file__).parents[1] / "data" / "shapes"


def read_tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` by its relative path, so that two trees compare with ==."""
    return {path.relative_to(folder).as_posix(): path.read_bytes()
            for path in sorted(folder.rglob("*")) if path.is_file()}


def count_pngs(folder: Path) -> dict[tuple[str, str], int]:
    return {(split, name): len(list((folder / split / name).glob("*.png")))
            for split in shapes.SPLIT_FOLDERS for name in shapes.CLASS_NAMES}


def gray_pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L"), dtype=float)


@pytest.fixture(scope="module")
def default_set(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("default") / "shapes"
    assert shapes.generate(out) == 300
    return out


# -- layout -------------------------------------------------------------------------------


def test_defaults_split_each_class_70_train_30_test(default_set):
    counts = count_pngs(default_set)
    assert counts == {(split, name): 70 if split == "training_set" else 30
                      for split, name in counts}
    assert sorted(p.name for p in default_set.iterdir()) == ["test_set", "training_set"]


def test_files_are_numbered_in_generation_order_across_both_splits(default_set):
    train = sorted(p.name for p in (default_set / "training_set" / "circles").iterdir())
    test = sorted(p.name for p in (default_set / "test_set" / "squares").iterdir())
    assert train[0] == "circle_0001.png" and train[-1] == "circle_0070.png"
    assert test[0] == "square_0071.png" and test[-1] == "square_0100.png"


def test_every_image_is_a_28x28_rgb_png(default_set):
    for path in default_set.rglob("*.png"):
        with Image.open(path) as image:
            assert (image.format, image.mode, image.size) == ("PNG", "RGB", (28, 28)), path


def test_every_drawing_is_different(default_set):
    contents = [path.read_bytes() for path in default_set.rglob("*.png")]
    assert len(set(contents)) == len(contents) == 300


# -- the look of a drawing ------------------------------------------------------------------


def test_dark_ink_outlines_on_light_paper(default_set):
    for path in default_set.rglob("*.png"):
        gray = gray_pixels(path)
        paper_level = np.median(gray)
        ink = gray < paper_level - 60
        assert paper_level > 180, path
        assert gray[ink].mean() < paper_level - 100, path
        # An outline covers a small share of the picture; a filled shape would not.
        assert 0.03 < ink.mean() < 0.35, path


def test_outlines_are_hollow(default_set):
    """The middle of the drawing's bounding box is paper, not ink."""
    for path in default_set.rglob("*.png"):
        gray = gray_pixels(path)
        rows, cols = np.nonzero(gray < np.median(gray) - 60)
        assert rows.size, f"no ink in {path}"
        middle = gray[(rows.min() + rows.max()) // 2, (cols.min() + cols.max()) // 2]
        assert middle > np.median(gray) - 30, path


def test_larger_size_draws_the_same_shape_in_more_detail(tmp_path):
    shapes.generate(tmp_path / "small", per_class=4, size=16)
    shapes.generate(tmp_path / "large", per_class=4, size=64)
    small = gray_pixels(tmp_path / "small" / "training_set" / "triangles" / "triangle_0001.png")
    large = gray_pixels(tmp_path / "large" / "training_set" / "triangles" / "triangle_0001.png")
    shrunk = large.reshape(16, 4, 16, 4).mean(axis=(1, 3))
    assert np.abs(shrunk - small).mean() < 6


# -- options and determinism ----------------------------------------------------------------


def test_same_options_give_byte_identical_trees(tmp_path, default_set):
    shapes.generate(tmp_path / "again")
    assert read_tree(tmp_path / "again") == read_tree(default_set)


def test_committed_dataset_is_a_fresh_default_generation(default_set):
    assert read_tree(COMMITTED_DATA) == read_tree(default_set), (
        "data/shapes is stale: run `reportgen data` and commit the result")


def test_options_set_count_split_and_size(tmp_path):
    written = shapes.generate(tmp_path / "out", per_class=10, test_fraction=0.5, size=16)
    assert written == 30
    assert set(count_pngs(tmp_path / "out").values()) == {5}
    with Image.open(tmp_path / "out" / "test_set" / "circles" / "circle_0010.png") as image:
        assert image.size == (16, 16)


def test_fewer_images_per_class_are_the_first_drawings_of_more(tmp_path, default_set):
    shapes.generate(tmp_path / "few", per_class=10)
    few = read_tree(tmp_path / "few" / "training_set")
    many = read_tree(default_set / "training_set")
    assert len(few) == 21
    assert all(many[name] == content for name, content in few.items())


def test_another_seed_draws_other_images(tmp_path, default_set):
    shapes.generate(tmp_path / "seed1", seed=1)
    other, default = read_tree(tmp_path / "seed1"), read_tree(default_set)
    assert other.keys() == default.keys()
    assert all(other[name] != default[name] for name in default)


@pytest.mark.parametrize(("options", "message"), [
    ({"per_class": 1}, "at least 2 images"),
    ({"per_class": 0}, "at least 2 images"),
    ({"test_fraction": 0.0}, "strictly between 0 and 1"),
    ({"test_fraction": 1.0}, "strictly between 0 and 1"),
    ({"test_fraction": -0.2}, "strictly between 0 and 1"),
    ({"per_class": 4, "test_fraction": 0.1}, "0 test and 4 training"),
    ({"per_class": 4, "test_fraction": 0.9}, "4 test and 0 training"),
    ({"size": 7}, "at least 8 pixels"),
    ({"seed": -1}, "seed must be 0 or more"),
])
def test_bad_arguments_raise_one_clear_user_error(tmp_path, options, message):
    with pytest.raises(UserError, match=message) as raised:
        shapes.generate(tmp_path / "out", **options)
    assert "\n" not in str(raised.value)
    assert not (tmp_path / "out").exists()


# -- writing the folder safely --------------------------------------------------------------


def test_refuses_a_folder_that_is_not_a_shapes_dataset(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "holiday.jpg").write_bytes(b"not ours")
    with pytest.raises(UserError, match="does not look like a shapes dataset"):
        shapes.generate(tmp_path / "photos", per_class=2, test_fraction=0.5)
    assert read_tree(tmp_path / "photos") == {"holiday.jpg": b"not ours"}


def test_refuses_split_folders_holding_other_classes(tmp_path):
    (tmp_path / "out" / "training_set" / "cats").mkdir(parents=True)
    with pytest.raises(UserError, match="does not look like a shapes dataset"):
        shapes.generate(tmp_path / "out", per_class=2, test_fraction=0.5)
    assert (tmp_path / "out" / "training_set" / "cats").is_dir()


def test_refuses_a_file_in_the_way(tmp_path):
    (tmp_path / "out").write_text("a file")
    with pytest.raises(UserError, match="not a folder"):
        shapes.generate(tmp_path / "out", per_class=2, test_fraction=0.5)


def test_rerun_replaces_old_images_and_keeps_everything_else(tmp_path):
    out = tmp_path / "out"
    shapes.generate(out, per_class=20)
    (out / "README.txt").write_text("my notes")
    shapes.generate(out, per_class=4, test_fraction=0.5)
    assert set(count_pngs(out).values()) == {2}
    assert (out / "README.txt").read_text() == "my notes"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_interrupted_run_leaves_no_half_dataset(tmp_path, monkeypatch):
    real_draw, drawn = shapes.draw, []

    def draw_then_fail(*args, **kwargs):
        if len(drawn) == 5:
            raise KeyboardInterrupt
        drawn.append(1)
        return real_draw(*args, **kwargs)

    monkeypatch.setattr(shapes, "draw", draw_then_fail)
    with pytest.raises(KeyboardInterrupt):
        shapes.generate(tmp_path / "out", per_class=10)
    assert list(tmp_path.iterdir()) == []


# -- the command line -----------------------------------------------------------------------


def test_cli_data_writes_the_dataset(tmp_path):
    result = CliRunner().invoke(main, ["data", "--out", str(tmp_path / "out"), "--per-class", "4",
                                       "--test-fraction", "0.25", "--size", "12", "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert result.output == f"Wrote 12 images to {tmp_path / 'out'}\n"
    assert count_pngs(tmp_path / "out")[("test_set", "triangles")] == 1


@pytest.mark.parametrize("bad_options", [
    ["--per-class", "1"],
    ["--size", "4"],
    ["--test-fraction", "1"],
    ["--per-class", "4", "--test-fraction", "0.1"],
    ["--seed", "-1"],
])
def test_cli_bad_option_is_one_line_error_and_exit_2(tmp_path, bad_options):
    result = CliRunner().invoke(main, ["data", "--out", str(tmp_path / "out"), *bad_options])
    assert result.exit_code == 2
    error_lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(error_lines) == 1, result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()
