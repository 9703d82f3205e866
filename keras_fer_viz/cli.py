"""The ``keras-fer-viz`` command: train a model, explain one, or run the demo.

Keras and TensorFlow are imported inside the commands, so ``--help`` answers
at once. The command owns its process: it quiets TensorFlow's start-up
messages (the CUDA lines every CPU machine prints) before TensorFlow is
imported; the library itself never touches the environment.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["main", "load_model"]

# The data and training helpers live in the library (imports point down);
# their old names here still work, imported on first use (--help imports neither).
_MOVED = {
    "SYNTHETIC": "keras_fer_viz.data.splits",
    "load_splits": "keras_fer_viz.data.splits",
    "summarize": "keras_fer_viz.training",
}
DATA_HELP = (
    "a FER2013 CSV file (emotion,pixels[,Usage]), a folder of class folders of images "
    "(DIR/<class name>/*.png|jpg, as keras.utils.image_dataset_from_directory reads; class "
    "names from the folder names, optionally split into DIR/train, DIR/val and DIR/test), "
    "or 'synthetic' for built-in faces"
)
# What TensorFlow prints on a machine without a GPU (or without TensorRT)
# while it starts: absl's pre-initialisation notice, the CUDA stub and
# cuInit failures, cuDNN/cuFFT/cuBLAS factory registrations, CPU features.
_BACKEND_NOISE = re.compile(
    r"cuda|cuinit|cudnn|cufft|cublas|tensorrt|tf-trt|absl::InitializeLog|cpu_feature_guard|"
    r"rebuild TensorFlow with the appropriate compiler flags",
    re.IGNORECASE,
)


def __getattr__(name: str):
    module = _MOVED.get(name)
    if module is None:
        raise AttributeError(f"module 'keras_fer_viz.cli' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a positive integer, received {text!r}"
        ) from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, received {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, received {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, received {text!r}")
    return value


def _pixel_range(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, received {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number, received {text!r}")
    return value


def _add_data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--image-size",
        type=_positive_int,
        nargs=2,
        metavar=("HEIGHT", "WIDTH"),
        help="resize the images of a folder to HEIGHT x WIDTH as they are read (needed when "
        "they differ in size)",
    )


def _add_model_options(p: argparse.ArgumentParser, samples_help: str) -> None:
    """The options of the commands that explain a saved model on a data source."""
    p.add_argument(
        "--model",
        required=True,
        type=Path,
        metavar="MODEL",
        help="a saved Keras model: a .keras file, or a .h5 file from Keras 2 or 3 (loaded "
        "without its optimizer, which explaining does not need)",
    )
    p.add_argument("--data", required=True, metavar="PATH|DIR|synthetic", help=DATA_HELP)
    _add_data_options(p)
    p.add_argument(
        "--input-range",
        type=_pixel_range,
        nargs=2,
        default=(0.0, 255.0),
        metavar=("LOW", "HIGH"),
        help="the values the model takes for black and white pixels, e.g. --input-range -1 1 "
        "or --input-range 0 1 (default: 0 255, raw pixels, as the reference CNN takes)",
    )
    p.add_argument(
        "--output",
        metavar="NAME|INDEX",
        help="for a model with several outputs: the classifier output to explain, by name or "
        "index (the error for a multi-output model without it lists them)",
    )
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder")
    p.add_argument(
        "--samples", type=_positive_int, default=7000, help=f"{samples_help} (default: %(default)s)"
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    p.add_argument(
        "--allow-unsafe",
        action="store_true",
        help="load a model that Keras' safe mode refuses (it runs code stored in the file, "
        "e.g. a Lambda layer): only for files you trust",
    )
    p.add_argument("--quiet", action="store_true", help="no progress output")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="keras-fer-viz",
        description="See what a Keras image classifier looks at: train a facial-expression "
        "model on FER2013 or on built-in synthetic faces, and explain it.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = sub.add_parser(
        "train",
        help="train the reference CNN on FER2013 or synthetic faces",
        description="Train the reference CNN (keras_fer_viz.fer_cnn) with class weights, "
        "early stopping and best-model checkpointing, then print the accuracy of each class "
        "on held-out data. With a FER2013 file, the Training rows train, PublicTest validates "
        "and PrivateTest is held out; a file without a Usage column, or an image folder that "
        "is not split into train/val/test folders, is split 80/10/10. The network takes the "
        "data's image size and channels, with one output per class.",
    )
    train.add_argument("--data", required=True, metavar="PATH|DIR|synthetic", help=DATA_HELP)
    _add_data_options(train)
    train.add_argument(
        "--out",
        required=True,
        type=Path,
        metavar="MODEL.keras",
        help="where to save the best model (a .keras file)",
    )
    _add_training_options(train, epochs=30)

    report = sub.add_parser(
        "report",
        help="render every figure of the spec for a model into a folder with an index.html",
        description="Explain a trained model: render every entry of the figure spec "
        "(saliency, filters, feature maps, LIME, confusion matrix, Grad-CAM, CAM, training "
        "curves) to PNG files in DIR, with DIR/index.html holding the captions, the model "
        "summary and the accuracy per class. Images are fitted to the model's input (resized "
        "to its height and width, gray <-> RGB, scaled to --input-range) and the index says "
        "what was done. The held-out split is explained and the training split trains the "
        "CAM head. A figure that fails is reported and the others go on. Nothing is written "
        "outside DIR.",
    )
    _add_model_options(report, samples_help="synthetic training faces for the CAM head")
    report.add_argument(
        "--spec", type=Path, metavar="FILE", help="a figure spec (default: the packaged one)"
    )
    report.add_argument(
        "--history",
        type=Path,
        metavar="FILE",
        help="a JSON file of a Keras History.history dict, for the training curves",
    )
    _add_explorer_option(report)

    explain = sub.add_parser(
        "explain",
        help="explain every image of a data split with one method: maps and class means",
        description="Explain every image of a data split with one registered method "
        "(keras_fer_viz.EXPLAINERS) and average the maps per cell of the confusion matrix. "
        "DIR gets maps.npy (N, H, W), predictions.npy, labels.npy, class_means.npz "
        "(class_means (C, C, H, W), counts (C, C), class_names) and class_means.png (rows: "
        "true class, columns: predicted class). Memory does not grow with the number of "
        "images; an interrupted run resumes when the same command is run again. Images are "
        "fitted to the model's input as the report fits them.",
    )
    _add_model_options(explain, samples_help="synthetic faces drawn for --data synthetic")
    explain.add_argument(
        "--split",
        choices=("train", "val", "test", "all"),
        default="test",
        help="which images to explain (default: %(default)s, the held-out split)",
    )
    explain.add_argument(
        "--method", default="grad_cam", help="a registered method (default: %(default)s)"
    )
    explain.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an option of the method, e.g. --option layer=block2_conv2 --option samples=16 "
        "(VALUE read as JSON when it parses, else as text); repeatable",
    )
    explain.add_argument(
        "--target",
        choices=("label", "predicted"),
        default="label",
        help="explain the true class or the predicted one (default: %(default)s)",
    )
    explain.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="where the work runs: this process, or Ray actors (the ray extra; a local "
        "instance, or the cluster RAY_ADDRESS names) (default: %(default)s)",
    )
    explain.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="Ray actors with --engine ray (default: one per CPU of the Ray cluster)",
    )

    demo = sub.add_parser(
        "demo",
        help="synthetic faces -> train the reference CNN -> the full report in a folder",
        description="Draw synthetic faces, train the reference CNN on them, and write the "
        "model, the held-out accuracy per class and the full figure report (index.html) "
        "into an output folder.",
    )
    demo.add_argument(
        "--out",
        type=Path,
        default=Path("fer-viz-demo"),
        metavar="DIR",
        help="output folder (default: %(default)s)",
    )
    _add_training_options(demo, epochs=5)
    _add_explorer_option(demo)
    return parser


def _add_explorer_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--explorer-faces",
        type=_count,
        default=None,
        metavar="N",
        help="faces the page's explorer shows per cell of the confusion matrix, each with "
        "its map for every registered method; 0 leaves the explorer out (default: "
        "keras_fer_viz.report.FACES_PER_CELL)",
    )


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, received {text!r}")
    return value


def _add_training_options(p: argparse.ArgumentParser, epochs: int) -> None:
    p.add_argument(
        "--epochs",
        type=_positive_int,
        default=epochs,
        help="maximum number of epochs (default: %(default)s)",
    )
    p.add_argument(
        "--batch-size", type=_positive_int, default=32, help="batch size (default: %(default)s)"
    )
    p.add_argument(
        "--samples",
        type=_positive_int,
        default=7000,
        help="number of synthetic training faces (default: %(default)s)",
    )
    p.add_argument(
        "--width",
        type=_positive_float,
        default=1.0,
        help="multiplier of the CNN's filter counts (default: %(default)s)",
    )
    p.add_argument(
        "--patience",
        type=_positive_int,
        default=5,
        help="early-stopping patience in epochs (default: %(default)s)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _start_keras() -> None:
    """Imports Keras and starts its backend without TensorFlow's CPU-machine noise.

    TF_CPP_MIN_LOG_LEVEL=2 hides TensorFlow's info and warning logs, but not
    what it prints before its logging starts (the CUDA stub's notice) nor
    the cuInit error of a machine without a GPU, which it prints when it
    first lists its devices. So fd 2 is captured while Keras and TensorFlow
    are imported and TensorFlow's devices are listed, and what was printed then is passed on without
    the CUDA/cuDNN/TensorRT lines. A user who set TF_CPP_MIN_LOG_LEVEL to 0
    or 1 sees everything.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "keras" in sys.modules or os.environ["TF_CPP_MIN_LOG_LEVEL"].strip() in ("0", "1"):
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as log:
        os.dup2(log.fileno(), 2)
        try:
            import keras  # noqa: F401

            # Whatever the backend, Keras imports TensorFlow when it is installed
            # (to load a model, for TensorBoard): start it here, once.
            if importlib.util.find_spec("tensorflow") is not None:
                import tensorflow as tf

                tf.config.list_physical_devices()
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            log.seek(0)
            printed = log.read().decode("utf-8", "replace").splitlines(keepends=True)
            kept = [line for line in printed if not _BACKEND_NOISE.search(line)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def main(argv=None) -> int:
    """Runs the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    _start_keras()
    try:
        if args.command == "train":
            _train_command(args)
        elif args.command == "demo":
            _demo_command(args)
        elif args.command == "report":
            _report_command(args)
        elif args.command == "explain":
            _explain_command(args)
    except (ValueError, FileNotFoundError, ImportError) as err:  # ImportError: an extra
        print(f"keras-fer-viz {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


def _fit(args, splits, checkpoint: Path, callbacks=()):
    """Builds and trains the reference CNN; returns (model, history)."""
    import keras

    from keras_fer_viz.models import fer_cnn
    from keras_fer_viz.training import train

    keras.utils.set_random_seed(args.seed)
    x_tr, _ = splits["train"]
    model = fer_cnn(
        num_classes=len(splits["class_names"]),
        input_shape=tuple(int(d) for d in x_tr.shape[1:]),
        width=args.width,
    )
    history = train(
        model,
        *splits["train"],
        validation_data=splits["val"],
        epochs=args.epochs,
        batch_size=args.batch_size,
        patience=args.patience,
        checkpoint=checkpoint,
        callbacks=callbacks,
        seed=args.seed,
        verbose=0 if args.quiet else "auto",
    )
    return model, history


def _output_arg(text):
    """--output: an index when it is a whole number, else a name; None when absent."""
    if text is None:
        return None
    return int(text) if text.lstrip("-").isdigit() else text


def _train_command(args) -> None:
    from keras_fer_viz.data.splits import load_splits
    from keras_fer_viz.training import summarize

    if args.out.suffix != ".keras":
        raise ValueError(f"--out must end in '.keras'. Received: {str(args.out)!r}")
    splits = load_splits(
        args.data, samples=args.samples, seed=args.seed, image_size=args.image_size
    )
    print(
        f"Training on {splits['source']}: {len(splits['train'][1])} train, "
        f"{len(splits['val'][1])} validation, {len(splits['test'][1])} held-out images."
    )
    model, _ = _fit(args, splits, checkpoint=args.out)
    x_test, y_test = splits["test"]
    summary = summarize(model, x_test, y_test, splits["class_names"])
    print(f"\nBest model saved to {args.out}\nHeld-out accuracy per class:\n{summary['table']}")


def load_model(path: Path, allow_unsafe: bool = False):
    """Loads a .keras or .h5 model for explaining, with a clear refusal when it needs more.

    The model is loaded in Keras' safe mode and without compiling it:
    explaining never needs the optimizer, and a Keras 2 .h5 file's optimizer
    config (``lr``, ``decay``) does not load in Keras 3.
    """
    import keras

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--model: no such file: {str(path)!r}")
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=not allow_unsafe)
    except ValueError as err:
        if "safe_mode" in str(err) or "unsafe" in str(err).lower():
            raise ValueError(
                f"Model {str(path)!r} needs unsafe loading: it holds Python code (such as a "
                "Lambda layer) that Keras' safe mode will not run. If you trust the file, pass "
                "--allow-unsafe."
            ) from None
        raise


def _report_command(args) -> None:
    import keras

    from keras_fer_viz.data.splits import load_splits
    from keras_fer_viz.report import write_report
    from keras_fer_viz.spec import load_spec

    spec = load_spec(args.spec)  # a bad spec fails before anything is loaded or written
    history = None
    if args.history is not None:
        if not args.history.is_file():
            raise FileNotFoundError(f"--history: no such file: {str(args.history)!r}")
        history = json.loads(args.history.read_text())
        if not isinstance(history, dict):
            raise ValueError(
                f"--history must hold a JSON object (History.history). "
                f"Received: {type(history).__name__}"
            )
    model = load_model(args.model, args.allow_unsafe)
    keras.utils.set_random_seed(args.seed)
    splits = load_splits(
        args.data, samples=args.samples, seed=args.seed, image_size=args.image_size
    )
    x, y = splits["test"]
    result = write_report(
        model,
        x,
        y,
        args.out,
        spec,
        history=history,
        train_data=splits["train"],
        class_names=splits["class_names"],
        evidence=splits["evidence"],
        input_range=tuple(args.input_range),
        output=_output_arg(args.output),
        source=splits["source"],
        **_explorer_faces(args),
        verbose=0 if args.quiet else "auto",
    )
    _print_report(result)


def _method_options(pairs) -> dict:
    """--option NAME=VALUE pairs as a dict; a VALUE that parses as JSON is taken as JSON."""
    options = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or not name.isidentifier():
            raise ValueError(f"--option: expected NAME=VALUE. Received: {pair!r}")
        try:
            options[name] = json.loads(text)
        except json.JSONDecodeError:
            options[name] = text
    return options


def _explain_command(args) -> None:
    import keras
    import numpy as np

    from keras_fer_viz import _io
    from keras_fer_viz.data.adapt import adapt_images
    from keras_fer_viz.data.splits import load_splits
    from keras_fer_viz.datasets import explain_dataset
    from keras_fer_viz.figures import class_mean_grid
    from keras_fer_viz.layers import input_shape
    from keras_fer_viz.registry import EXPLAINERS

    options = _method_options(args.option)
    if args.output is not None:
        options["output"] = _output_arg(args.output)
    model = load_model(args.model, args.allow_unsafe)
    keras.utils.set_random_seed(args.seed)
    splits = load_splits(
        args.data, samples=args.samples, seed=args.seed, image_size=args.image_size
    )
    names = ("train", "val", "test") if args.split == "all" else (args.split,)
    x = np.concatenate([splits[n][0] for n in names])
    y = np.concatenate([splits[n][1] for n in names])
    x, steps = adapt_images(x, (None, *input_shape(model)), tuple(args.input_range))
    if steps:
        print(f"Images adapted to the model's input: {', '.join(steps)}.")
    print(f"Explaining {len(x)} images ({args.split}, {splits['source']}) with {args.method}.")
    result = explain_dataset(
        args.method,
        model,
        (x, y),
        target=args.target,
        out=args.out,
        engine=args.engine,
        num_workers=args.workers,
        verbose=not args.quiet,
        **options,
    )
    class_names = list(splits["class_names"])
    with _io.atomic_path(args.out / "class_means.npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez(
                f,
                class_means=result.class_means,
                counts=result.counts,
                class_names=np.array(class_names),
            )
    fig = class_mean_grid(
        result.class_means,
        result.counts,
        class_names,
        title=f"Mean {args.method} maps, {len(y)} images: true class (rows) x predicted",
        blank_reason=getattr(EXPLAINERS.get(args.method), "blank_reason", None),
    )
    with _io.atomic_path(args.out / "class_means.png") as tmp:
        fig.savefig(tmp, dpi=100)
    accuracy = np.trace(result.counts) / max(int(result.counts.sum()), 1)
    print(
        f"Wrote {args.out / 'maps.npy'} ({len(y)} maps), class_means.npz and class_means.png "
        f"(accuracy {accuracy:.3f})."
    )


def _explorer_faces(args) -> dict:
    """write_report's explorer_faces when --explorer-faces was given (else its default)."""
    return {} if args.explorer_faces is None else {"explorer_faces": args.explorer_faces}


def _print_report(result) -> None:
    if result.adapted:
        print(f"\nImages adapted to the model's input: {', '.join(result.adapted)}.")
    print(f"\nWrote {len(result.figures)} figures and {result.index}.")
    for name, why in result.skipped.items():
        print(f"  skipped {name}: {why}")
    for name, why in result.failed.items():
        print(f"  FAILED {name}: {why}")
    if result.explorer is not None:
        sizes = result.explorer.files()
        print(
            f"The explorer: {len(result.explorer.index)} faces, every registered method, "
            f"{len(sizes)} images of {sum(sizes.values()) / 1024:.0f} KiB."
        )


def _demo_command(args) -> None:
    from keras_fer_viz import _io
    from keras_fer_viz.data.splits import SYNTHETIC, load_splits
    from keras_fer_viz.training import summarize

    start = time.perf_counter()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    splits = load_splits(SYNTHETIC, samples=args.samples, seed=args.seed)
    print(
        f"Demo: training the reference CNN on {len(splits['train'][1])} synthetic faces "
        f"for up to {args.epochs} epochs."
    )
    from keras_fer_viz.callbacks import GradCAMCallback, SaliencyCallback, probe_faces

    # Watch attention form: one validation face per emotion, every epoch.
    x_val, y_val = splits["val"]
    probes, probe_labels = probe_faces(x_val, y_val, seed=args.seed)
    watch = [
        SaliencyCallback(probes, probe_labels, out_dir=out / "epochs"),
        GradCAMCallback(probes, probe_labels, out_dir=out / "epochs"),
    ]
    model, history = _fit(args, splits, checkpoint=out / "model.keras", callbacks=watch)
    x_test, y_test = splits["test"]
    summary = summarize(model, x_test, y_test, splits["class_names"])
    summary["epochs_run"] = len(history.history["loss"])
    summary["train_seconds"] = round(time.perf_counter() - start, 1)
    _io.write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    _io.write_text(
        out / "summary.txt",
        "Held-out accuracy per class (synthetic faces)\n\n" + summary["table"] + "\n",
    )
    logs = {k: [float(v) for v in values] for k, values in history.history.items()}
    _io.write_text(out / "history.json", json.dumps(logs, indent=2) + "\n")
    print(f"\nHeld-out accuracy per class:\n{summary['table']}")
    print("\nExplaining the model: every figure of the spec.")
    from keras_fer_viz.report import write_report

    result = write_report(
        model,
        x_test,
        y_test,
        out,
        history=logs,
        train_data=splits["train"],
        title="keras-fer-viz demo: the reference CNN on synthetic faces",
        epoch_maps={callback.name: callback.epoch_maps() for callback in watch},
        evidence=splits["evidence"],
        source=splits["source"],
        **_explorer_faces(args),
        verbose=0 if args.quiet else "auto",
    )
    _print_report(result)
    print(f"Open {out / 'index.html'}. Done in {time.perf_counter() - start:.0f} s.")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
