"""Tests of keras_fer_viz.data.fer2013.load_fer2013: round trips and every bad row."""

import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from keras_fer_viz.data import fer2013
from keras_fer_viz.data.fer2013 import load_fer2013, load_fer2013_usage

RNG = np.random.default_rng(0)
IMAGES = RNG.integers(0, 256, (6, 48, 48, 1), dtype=np.uint8)
IMAGES[0, 0, 0, 0], IMAGES[0, 0, 1, 0] = 0, 255  # both ends of the range
LABELS = np.array([0, 1, 2, 3, 6, 5])
USAGE = ["Training", "Training", "PublicTest", "PrivateTest", "Training", "PublicTest"]


def pixel_text(img):
    return " ".join(map(str, np.asarray(img).reshape(-1)))


def csv_text(
    images=IMAGES, labels=LABELS, usages=USAGE, *, order="kaggle", quote=False, newline="\n"
):
    """A FER2013 file: 'kaggle' = emotion,pixels,Usage; 'icml' = emotion, Usage, pixels."""
    q = '"' if quote else ""
    rows = []
    for i, (img, lab) in enumerate(zip(images, labels, strict=True)):
        pix = f"{q}{pixel_text(img)}{q}"
        if order == "kaggle":
            rows.append(f"{lab},{pix}" + (f",{usages[i]}" if usages is not None else ""))
        else:
            rows.append(f"{lab},{usages[i]},{pix}")
    if order == "kaggle":
        header = "emotion,pixels" + (",Usage" if usages is not None else "")
    else:
        header = "emotion, Usage, pixels"
    return newline.join([header, *rows]) + newline


def write(tmp_path, text, name="fer2013.csv"):
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(),
        dict(order="icml"),
        dict(quote=True),
        dict(newline="\r\n"),
        dict(order="icml", quote=True, newline="\r\n"),
        dict(usages=None),
    ],
)
def test_round_trip(tmp_path, kwargs):
    x, y = load_fer2013(write(tmp_path, csv_text(**kwargs)))
    assert x.dtype == np.uint8 and x.shape == (6, 48, 48, 1)
    assert y.dtype == np.int64
    np.testing.assert_array_equal(x, IMAGES)
    np.testing.assert_array_equal(y, LABELS)


def test_accepts_pathlike_str_blank_lines_and_no_final_newline(tmp_path):
    text = csv_text().replace("\n", "\n\n", 2).rstrip("\n")
    x, y = load_fer2013(str(write(tmp_path, text)))
    np.testing.assert_array_equal(x, IMAGES)
    np.testing.assert_array_equal(y, LABELS)


@pytest.mark.parametrize(
    "usage, rows", [("Training", [0, 1, 4]), ("PublicTest", [2, 5]), ("PrivateTest", [3])]
)
def test_usage_picks_rows(tmp_path, usage, rows):
    x, y = load_fer2013(write(tmp_path, csv_text()), usage=usage)
    np.testing.assert_array_equal(x, IMAGES[rows])
    np.testing.assert_array_equal(y, LABELS[rows])


def test_usage_column_is_returned(tmp_path):
    _, _, u = load_fer2013_usage(write(tmp_path, csv_text(order="icml")))
    assert u.tolist() == USAGE
    _, _, none = load_fer2013_usage(write(tmp_path, csv_text(usages=None)))
    assert none is None


def test_multi_chunk_file_with_a_bad_row_deep_inside(tmp_path, monkeypatch):
    monkeypatch.setattr(fer2013, "_CHUNK_ROWS", 4)  # many chunks, several threads
    n = 30
    images = RNG.integers(0, 256, (n, 48, 48, 1), dtype=np.uint8)
    labels = RNG.integers(0, 7, n)
    lines = csv_text(images, labels, ["Training"] * n).splitlines()
    lines[18] = lines[18].replace(",Training", " 7,Training")  # row 17: 2305 pixels
    path = write(tmp_path, "\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"line 19: expected 2304 pixels \(48x48\), received 2305"):
        load_fer2013(path)
    with pytest.warns(UserWarning, match="skipped 1 bad row"):
        x, y = load_fer2013(path, errors="skip")
    keep = [i for i in range(n) if i != 17]
    np.testing.assert_array_equal(x, images[keep])
    np.testing.assert_array_equal(y, labels[keep])


def replace_row(text, row, new):
    lines = text.split("\n")
    lines[row] = new(lines[row])
    return "\n".join(lines)


def set_pixel(line, index, value):
    label, pixels, usage = line.split(",")
    values = pixels.split()
    values[index] = value
    return ",".join([label, " ".join(values), usage])


BAD_ROWS = [
    (lambda s: set_pixel(s, 10, "12.5"), r"line 3: expected integer pixels 0-255, received '12.5'"),
    (lambda s: set_pixel(s, 0, "-3"), r"line 3: expected integer pixels 0-255, received '-3'"),
    (lambda s: set_pixel(s, 2303, "abc"), r"line 3: expected integer pixels 0-255, received 'abc'"),
    (lambda s: set_pixel(s, 5, "256"), r"line 3: expected pixels 0-255, received '256'"),
    (lambda s: set_pixel(s, 5, "1000"), r"line 3: expected pixels 0-255, received '1000'"),
    (lambda s: set_pixel(s, 7, "0255"), r"line 3: expected pixels 0-255, received '0255'"),
    (
        lambda s: s.replace(s.split(",")[1], s.split(",")[1][:-4]),
        r"line 3: expected 2304 pixels \(48x48\), received 2303",
    ),
    (lambda s: "7" + s[1:], r"line 3: expected an emotion label 0-6, received '7'"),
    (lambda s: "x" + s[1:], r"line 3: expected an emotion label 0-6, received 'x'"),
    (lambda s: "-1" + s[1:], r"line 3: expected an emotion label 0-6, received '-1'"),
    (
        lambda s: s.replace("Training", "Validation"),
        r"line 3: unknown Usage 'Validation', expected one of \('Training'",
    ),
    (lambda s: s + ",extra", r"line 3: expected 3 comma-separated fields, received 4"),
    (lambda s: s.rsplit(",", 1)[0], r"line 3: expected 3 comma-separated fields, received 2"),
]


@pytest.mark.parametrize("edit, match", BAD_ROWS)
def test_bad_row_raises_naming_line_and_problem(tmp_path, edit, match):
    path = write(tmp_path, replace_row(csv_text(), 2, edit))
    with pytest.raises(ValueError, match=match) as err:
        load_fer2013(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("edit, match", BAD_ROWS)
def test_bad_row_is_skipped_with_one_warning(tmp_path, edit, match):
    path = write(tmp_path, replace_row(csv_text(), 2, edit))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        x, y = load_fer2013(path, errors="skip")
    assert len(caught) == 1 and issubclass(caught[0].category, UserWarning)
    assert "skipped 1 bad row(s) (line 3)" in str(caught[0].message)
    keep = [0, 2, 3, 4, 5]
    np.testing.assert_array_equal(x, IMAGES[keep])
    np.testing.assert_array_equal(y, LABELS[keep])


def test_all_bad_rows_are_counted(tmp_path):
    text = replace_row(csv_text(), 2, lambda s: "9" + s[1:])
    text = replace_row(text, 5, lambda s: set_pixel(s, 3, "300"))
    path = write(tmp_path, text)
    with pytest.raises(ValueError, match=r"line 3: .*\(2 bad rows in all\)"):
        load_fer2013(path)
    with pytest.warns(UserWarning, match=r"skipped 2 bad row\(s\) \(line 3, 6\)"):
        x, _ = load_fer2013(path, errors="skip")
    assert len(x) == 4


def test_skip_with_every_row_bad_raises(tmp_path):
    text = (
        csv_text().replace("Training", "T").replace("PublicTest", "P").replace("PrivateTest", "Q")
    )
    with pytest.raises(ValueError, match="no valid rows; all 6 rows are bad"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            load_fer2013(write(tmp_path, text), errors="skip")


@pytest.mark.parametrize(
    "text, match",
    [
        ("", "is empty"),
        ("\n\n", "is empty"),
        ("emotion,pixels,Usage\n", "has a header but no data rows"),
        ("emotion,pixels,Usage\n\n\n", "has a header but no data rows"),
        ("label,pixels\n0,1 2\n", r"line 1: missing column 'emotion'.*Received: 'label,pixels'"),
        ("emotion,Usage\n0,Training\n", r"line 1: missing column 'pixels'"),
    ],
)
def test_bad_files(tmp_path, text, match):
    with pytest.raises(ValueError, match=match):
        load_fer2013(write(tmp_path, text))


def test_usage_errors(tmp_path):
    with pytest.raises(
        ValueError,
        match=r"`usage`.*\('Training', 'PublicTest', 'PrivateTest'\)"
        r".*Received: 'training'",
    ):
        load_fer2013(tmp_path / "not-read.csv", usage="training")
    with pytest.raises(ValueError, match=r"no Usage column.*usage='Training'"):
        load_fer2013(write(tmp_path, csv_text(usages=None)), usage="Training")
    only_training = csv_text(IMAGES[:2], LABELS[:2], USAGE[:2])
    with pytest.raises(ValueError, match=r"no row with Usage 'PrivateTest'.*\['Training'\]"):
        load_fer2013(write(tmp_path, only_training), usage="PrivateTest")


def test_errors_argument_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match=r"`errors`.*'raise' or 'skip'.*Received: 'ignore'"):
        load_fer2013(tmp_path / "x.csv", errors="ignore")
    with pytest.raises(FileNotFoundError):
        load_fer2013(tmp_path / "missing.csv")


@given(
    images=arrays(np.uint8, st.tuples(st.integers(1, 5), st.just(48), st.just(48), st.just(1))),
    data=st.data(),
)
def test_round_trip_property(tmp_path_factory, images, data):
    n = len(images)
    labels = np.array(data.draw(st.lists(st.integers(0, 6), min_size=n, max_size=n)))
    usages = data.draw(st.lists(st.sampled_from(fer2013.USAGES), min_size=n, max_size=n))
    path = write(tmp_path_factory.mktemp("prop"), csv_text(images, labels, usages))
    x, y, u = load_fer2013_usage(path)
    np.testing.assert_array_equal(x, images)
    np.testing.assert_array_equal(y, labels)
    assert u.tolist() == usages
