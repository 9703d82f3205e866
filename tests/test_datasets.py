"""Tests of keras_fer_viz.datasets.explain_dataset against direct computations."""

import os
import subprocess
import sys
import textwrap
import time

import keras
import numpy as np
import pytest

import keras_fer_viz as kfv
from keras_fer_viz import datasets
from keras_fer_viz.datasets import explain_dataset

N = 40


@pytest.fixture(scope="module")
def faces():
    return kfv.synthetic_faces(N, seed=5)


@pytest.fixture(scope="module")
def expected(fixture_model, faces):
    """Class means and counts by hand: Keras' own predict, a loop over the images."""
    x, y = faces.images, faces.labels.astype(np.int64)
    pred = fixture_model.predict(x, verbose=0).argmax(axis=1)
    maps = kfv.GradCAM(fixture_model).explain(x, y)
    sums = np.zeros((7, 7, 48, 48))
    counts = np.zeros((7, 7), np.int64)
    for m, i, j in zip(maps, y, pred, strict=True):
        sums[i, j] += m
        counts[i, j] += 1
    means = sums / np.maximum(counts, 1)[:, :, None, None]
    return dict(maps=maps, pred=pred, labels=y, means=means, counts=counts)


@pytest.fixture()
def small_chunks(monkeypatch):
    monkeypatch.setattr(datasets, "CHUNK", 16)  # 40 images: chunks of 16, 16 and 8


def check(result, expected):
    np.testing.assert_array_equal(result.counts, expected["counts"])
    np.testing.assert_array_equal(result.labels, expected["labels"])
    np.testing.assert_array_equal(result.predictions, expected["pred"])
    np.testing.assert_allclose(result.class_means, expected["means"], rtol=0, atol=2e-6)
    assert result.class_means.shape == (7, 7, 48, 48) and result.class_means.dtype == np.float32


def test_class_means_and_counts_equal_a_direct_computation(
    fixture_model, faces, expected, small_chunks
):
    result = explain_dataset("grad_cam", fixture_model, (faces.images, faces.labels))
    check(result, expected)
    assert result.method == "grad_cam" and result.out is None
    assert expected["counts"].sum() == N and (np.diag(expected["counts"]) > 0).sum() >= 3
    # Zeros where no image fell; a class's mean over all its predictions.
    empty = expected["counts"] == 0
    assert (result.class_means[empty] == 0).all()
    happy = expected["labels"] == 3
    np.testing.assert_allclose(
        result.class_mean(3), expected["maps"][happy].mean(axis=0), rtol=0, atol=2e-6
    )


class Batches(keras.utils.PyDataset):
    """A PyDataset of (x, y, sample weights) batches of 9."""

    def __init__(self, x, y):
        super().__init__()
        self.x, self.y = x, y

    def __len__(self):
        return -(-len(self.x) // 9)

    def __getitem__(self, i):
        part = slice(9 * i, 9 * i + 9)
        return self.x[part], self.y[part], np.ones(len(self.x[part]))


def test_every_data_source_gives_the_same_result(fixture_model, faces, expected):
    import tensorflow as tf

    x, y = faces.images, faces.labels
    one_hot = np.eye(7, dtype=np.float32)[y]
    edges = [0, 7, 20, 40]
    sources = {
        "a list of uneven batches": [
            (x[a:b], y[a:b]) for a, b in zip(edges, edges[1:], strict=False)
        ],
        "a generator of one-hot batches": (
            (x[i : i + 13], one_hot[i : i + 13]) for i in range(0, N, 13)
        ),
        "a tf.data.Dataset": tf.data.Dataset.from_tensor_slices((x, y)).batch(11),
        "a PyDataset with sample weights": Batches(x, y),
    }
    for name, data in sources.items():
        result = explain_dataset("grad_cam", fixture_model, data)
        try:
            check(result, expected)
        except AssertionError as error:
            raise AssertionError(f"{name}: {error}") from None


def test_target_predicted_explains_the_predicted_class(fixture_model, faces, expected):
    result = explain_dataset(
        kfv.GradCAM, fixture_model, (faces.images, faces.labels), target="predicted"
    )
    maps = kfv.GradCAM(fixture_model).explain(faces.images)  # the predicted class
    differs = expected["pred"] != expected["labels"]
    assert differs.any()  # else this test could not tell the two apart
    for i, j in {
        (int(a), int(b)) for a, b in zip(expected["labels"], expected["pred"], strict=True)
    }:
        chosen = (expected["labels"] == i) & (expected["pred"] == j)
        np.testing.assert_allclose(
            result.class_means[i, j], maps[chosen].mean(axis=0), rtol=0, atol=2e-6
        )


class Counting(kfv.GradCAM):
    """GradCAM counting the images it explains (a resumed run must skip the done ones)."""

    explained = 0

    def explain(self, images, target=None, batch_size=None):
        Counting.explained += len(images)
        return super().explain(images, target, batch_size)


class Interrupted:
    """Batches of 16 that stop, as a killed process would, after `stop` of them."""

    def __init__(self, x, y, stop):
        self.x, self.y, self.stop = x, y, stop

    def __iter__(self):
        for k, start in enumerate(range(0, len(self.x), 16)):
            if k == self.stop:
                raise KeyboardInterrupt
            yield self.x[start : start + 16], self.y[start : start + 16]


def written(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_out_writes_the_maps_and_an_interrupted_run_resumes_to_the_same_result(
    fixture_model, faces, expected, tmp_path
):
    x, y = faces.images, faces.labels
    whole = explain_dataset("grad_cam", fixture_model, Interrupted(x, y, 99), out=tmp_path / "a")
    check(whole, expected)
    assert written(tmp_path / "a") == ["labels.npy", "maps.npy", "predictions.npy", "progress.json"]
    np.testing.assert_allclose(np.load(tmp_path / "a" / "maps.npy"), expected["maps"], atol=1e-6)
    np.testing.assert_array_equal(np.load(tmp_path / "a" / "predictions.npy"), expected["pred"])
    np.testing.assert_array_equal(np.load(tmp_path / "a" / "labels.npy"), expected["labels"])

    out = tmp_path / "b"
    Counting.explained = 0
    with pytest.raises(KeyboardInterrupt):
        explain_dataset(Counting, fixture_model, Interrupted(x, y, 2), out=out)
    assert Counting.explained == 32
    # Two complete chunks and the progress record; no final array, no temporary file.
    assert written(out) == ["parts/part-0000000.npz", "parts/part-0000001.npz", "progress.json"]
    resumed = explain_dataset(Counting, fixture_model, Interrupted(x, y, 99), out=out)
    assert Counting.explained == 40  # only the last 8 images were explained again
    check(resumed, expected)
    for name in ("maps.npy", "predictions.npy", "labels.npy"):
        np.testing.assert_array_equal(np.load(out / name), np.load(tmp_path / "a" / name))
    assert written(out) == written(tmp_path / "a")

    # A finished run is read back, not computed again.
    again = explain_dataset(Counting, fixture_model, Interrupted(x, y, 0), out=out)
    assert Counting.explained == 40
    check(again, expected)


def test_a_folder_of_another_run_is_refused(fixture_model, faces, tmp_path):
    x, y = faces.images[:8], faces.labels[:8]
    explain_dataset("grad_cam", fixture_model, (x, y), out=tmp_path)
    with pytest.raises(ValueError, match="other arguments or weights"):
        explain_dataset("saliency", fixture_model, (x, y), out=tmp_path)
    with pytest.raises(ValueError, match="other arguments or weights"):
        explain_dataset("grad_cam", fixture_model, (x, y), out=tmp_path, layer="block2_conv2")
    (tmp_path / "progress.json").unlink()
    with pytest.raises(ValueError, match="already holds maps.npy"):
        explain_dataset("grad_cam", fixture_model, (x, y), out=tmp_path)


def test_a_killed_process_resumes_to_the_same_result(fixture_model, faces, expected, tmp_path):
    """SIGKILL at some moment of a run in another process; no half-written file is left."""
    from conftest import FIXTURES

    out = tmp_path / "run"
    script = textwrap.dedent(
        f"""
        import time
        import keras
        import keras_fer_viz as kfv

        faces = kfv.synthetic_faces({N}, seed=5)
        model = keras.saving.load_model({str(FIXTURES / "fer_cnn_small.keras")!r})

        def slow():
            for start in range(0, {N}, 16):
                yield faces.images[start : start + 16], faces.labels[start : start + 16]
                time.sleep(0.5)
            time.sleep(600)  # killed here at the latest: never finishes

        kfv.explain_dataset("grad_cam", model, slow(), out={str(out)!r})
        """
    )
    process = subprocess.Popen([sys.executable, "-c", script], env=dict(os.environ))
    try:
        deadline = time.monotonic() + 240
        while not (out / "parts" / "part-0000001.npz").exists():
            assert process.poll() is None, "the run ended before it was killed"
            assert time.monotonic() < deadline, "no chunk written in 240 s"
            time.sleep(0.05)
    finally:
        process.kill()
        process.wait()
    left = written(out)
    assert "maps.npy" not in left and all(not name.split("/")[-1].startswith(".") for name in left)
    x, y = faces.images, faces.labels
    resumed = explain_dataset("grad_cam", fixture_model, Interrupted(x, y, 99), out=out)
    check(resumed, expected)


def test_a_model_given_by_its_path(fixture_model, faces, tmp_path):
    path = tmp_path / "model.keras"
    fixture_model.save(path)
    x, y = faces.images[:10], faces.labels[:10]
    from_path = explain_dataset("saliency", path, (x, y))
    given = explain_dataset("saliency", fixture_model, (x, y))
    np.testing.assert_array_equal(from_path.class_means, given.class_means)

    class Located:  # any os.PathLike, not only pathlib's
        def __fspath__(self):
            return str(path)

    from_path_like = explain_dataset("saliency", Located(), (x, y))
    np.testing.assert_array_equal(from_path_like.class_means, given.class_means)


def test_bad_arguments_say_what_was_expected(fixture_model, faces, tmp_path):
    x, y = faces.images[:6], faces.labels[:6]
    with pytest.raises(ValueError, match=r"registered method: one of \[.*'grad_cam'.*nope"):
        explain_dataset("nope", fixture_model, (x, y))
    with pytest.raises(ValueError, match="Explainer class"):
        explain_dataset(len, fixture_model, (x, y))
    with pytest.raises(ValueError, match=r"target in \('label', 'predicted'\)"):
        explain_dataset("saliency", fixture_model, (x, y), target="true")
    with pytest.raises(ValueError, match=r"labels in \[0, 7\).*Received: 9"):
        explain_dataset("saliency", fixture_model, (x, np.full(6, 9)))
    with pytest.raises(ValueError, match=r"labels of shape \(6,\)"):
        explain_dataset("saliency", fixture_model, (x, np.zeros((6, 3))))
    with pytest.raises(ValueError, match="No such file"):
        explain_dataset("saliency", tmp_path / "missing.keras", (x, y))
    with pytest.raises(ValueError, match="at least one image"):
        explain_dataset("saliency", fixture_model, [])
    with pytest.raises(ValueError, match=r"\(images, labels\)"):
        explain_dataset("saliency", fixture_model, [x])
    with pytest.raises(
        ValueError, match=r"options of 'saliency' among \[.*'reduce'.*\['samples'\]"
    ):
        explain_dataset("saliency", fixture_model, (x, y), samples=4)
    with pytest.raises(ValueError, match=r"shape \(N, 48, 48, 1\)"):
        explain_dataset("saliency", fixture_model, [(x, y), (np.zeros((2, 40, 40, 1)), y[:2])])


def test_explain_command_writes_maps_class_means_and_figure(fixture_model, tmp_path, capsys):
    from keras_fer_viz import cli
    from keras_fer_viz.data.splits import load_splits

    model_path = tmp_path / "model.keras"
    fixture_model.save(model_path)
    out = tmp_path / "out"
    argv = ["explain", "--model", str(model_path), "--data", "synthetic", "--samples", "70"]
    argv += ["--method", "grad_cam", "--option", "layer=block2_conv2", "--out", str(out)]
    assert cli.main(argv) == 0
    assert "Wrote" in capsys.readouterr().out
    x, y = load_splits("synthetic", samples=70, seed=0)["test"]
    maps = kfv.GradCAM(fixture_model, layer="block2_conv2").explain(x, y)
    pred = fixture_model.predict(x, verbose=0).argmax(axis=1)
    np.testing.assert_allclose(np.load(out / "maps.npy"), maps, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(np.load(out / "predictions.npy"), pred)
    with np.load(out / "class_means.npz") as saved:
        counts = np.zeros((7, 7), np.int64)
        np.add.at(counts, (y, pred), 1)
        np.testing.assert_array_equal(saved["counts"], counts)
        assert list(saved["class_names"]) == list(kfv.EMOTIONS)
    assert (out / "class_means.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # A bad option names what was expected, and nothing is written.
    assert cli.main([*argv[:-1], str(tmp_path / "bad"), "--option", "nolayer"]) == 2
    assert "NAME=VALUE" in capsys.readouterr().err and not (tmp_path / "bad").exists()
    assert cli.main([*argv[:-1], str(tmp_path / "bad"), "--workers", "2"]) == 2
    assert "num_workers=None with engine='local'" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


# engine="ray": one local Ray instance (two CPUs, so two workers) for the module. Each
# Ray run starts two actors that import Keras and load the model: some seconds each.
@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    # The workers unpickle WhoExplains by reference, so they import this module.
    here = os.path.dirname(os.path.abspath(__file__))
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": here}},
    )
    yield ray
    ray.shutdown()


class WhoExplains(kfv.GradCAM):
    """GradCAM leaving in folder `log` a file named by the id of each process that explains."""

    def __init__(self, model, layer=None, *, log, batch_size=None):
        super().__init__(model, layer, batch_size=batch_size)
        self.log = log

    def explain(self, images, target=None, batch_size=None):
        open(os.path.join(self.log, str(os.getpid())), "a").close()
        return super().explain(images, target, batch_size)


def same(result, local):
    np.testing.assert_array_equal(result.counts, local.counts)
    np.testing.assert_array_equal(result.labels, local.labels)
    np.testing.assert_array_equal(result.predictions, local.predictions)
    np.testing.assert_allclose(result.class_means, local.class_means, rtol=0, atol=1e-6)


# One test, two Ray runs (each starts its workers, which import Keras: the cost):
# interrupted with a model object, resumed with its file.
@pytest.mark.slow
def test_ray_with_two_workers_equals_local_and_an_interrupted_run_resumes(
    local_ray, fixture_model, faces, expected, tmp_path
):
    # 120 images in batches of 16: eight chunks. Two workers hold four in flight, so at
    # the interrupt (before chunk 6) chunks 0 and 1 have been collected and written.
    x, y = np.concatenate([faces.images] * 3), np.concatenate([faces.labels] * 3)
    local = explain_dataset("grad_cam", fixture_model, Interrupted(x, y, 99), out=tmp_path / "a")
    np.testing.assert_array_equal(local.counts, 3 * expected["counts"])
    np.testing.assert_allclose(local.class_means, expected["means"], rtol=0, atol=2e-6)

    log = tmp_path / "pids"
    log.mkdir()
    out = tmp_path / "b"
    # A model object: saved, and shipped to the workers through Ray's object store.
    with pytest.raises(KeyboardInterrupt):  # num_workers=None: one per CPU of Ray, two
        explain_dataset(
            WhoExplains, fixture_model, Interrupted(x, y, 6), out=out, engine="ray", log=str(log)
        )
    assert written(out) == ["parts/part-0000000.npz", "parts/part-0000001.npz", "progress.json"]
    for pid in log.iterdir():
        pid.unlink()
    # The same model by its path: the file is shipped to the workers; the same weights,
    # so the run resumes.
    path = tmp_path / "model.keras"
    fixture_model.save(path)
    resumed = explain_dataset(
        WhoExplains, path, Interrupted(x, y, 99), out=out, engine="ray", num_workers=2, log=str(log)
    )
    same(resumed, local)
    pids = {int(p.name) for p in log.iterdir()}
    assert len(pids) == 2 and os.getpid() not in pids  # both workers explained, not this one
    assert resumed.out == out and written(out) == written(tmp_path / "a")
    for name in ("predictions.npy", "labels.npy"):
        np.testing.assert_array_equal(np.load(out / name), np.load(tmp_path / "a" / name))
    np.testing.assert_allclose(
        np.load(out / "maps.npy"), np.load(tmp_path / "a" / "maps.npy"), rtol=0, atol=1e-6
    )


def test_bad_engine_arguments_say_what_was_expected(fixture_model, faces, monkeypatch):
    x, y = faces.images[:6], faces.labels[:6]
    with pytest.raises(ValueError, match=r"engine in \('local', 'ray'\).*'spark'"):
        explain_dataset("saliency", fixture_model, (x, y), engine="spark")
    with pytest.raises(ValueError, match=r"positive int `num_workers` or None.*Received: 0"):
        explain_dataset("saliency", fixture_model, (x, y), engine="ray", num_workers=0)
    with pytest.raises(ValueError, match=r"num_workers=None with engine='local'.*engine='ray'"):
        explain_dataset("saliency", fixture_model, (x, y), num_workers=2)
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(ImportError, match=r"keras-fer-viz\[ray\]"):
        explain_dataset("saliency", fixture_model, (x, y), engine="ray")


def test_methods_that_predict_in_their_own_pass_need_no_second_one(
    fixture_model, faces, expected, monkeypatch
):
    """Grad-CAM's compiled pass gives the predicted classes: no separate forward pass."""
    from keras_fer_viz import _gradients

    def forbidden(*args, **kwargs):
        raise AssertionError("a second forward pass")

    monkeypatch.setattr(_gradients, "predict", forbidden)
    for name in ("grad_cam", "saliency", "gradient_x_input", "hires_cam"):
        result = explain_dataset(name, fixture_model, (faces.images, faces.labels))
        np.testing.assert_array_equal(result.predictions, expected["pred"])
        np.testing.assert_array_equal(result.counts, expected["counts"])
