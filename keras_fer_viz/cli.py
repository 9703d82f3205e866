"""The ``keras-fer-viz`` command: train a model, or run the demo end to end.

Keras and TensorFlow are imported inside the commands, so ``--help`` answers
at once.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

__all__ = ["main"]

SYNTHETIC = "synthetic"


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
        "and PrivateTest is held out; a file without a Usage column is split 80/10/10.",
    )
    train.add_argument(
        "--data",
        required=True,
        metavar="PATH|synthetic",
        help="a FER2013 CSV file (emotion,pixels,Usage), or 'synthetic' for built-in faces",
    )
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
        "summary and the accuracy per class. A figure that fails is reported and the others "
        "go on. Nothing is written outside DIR.",
    )
    report.add_argument(
        "--model", required=True, type=Path, metavar="MODEL.keras", help="a saved Keras model"
    )
    report.add_argument(
        "--data",
        required=True,
        metavar="PATH|synthetic",
        help="a FER2013 CSV file (its PrivateTest rows are explained, Training rows train the "
        "CAM head), or 'synthetic' for built-in faces",
    )
    report.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder")
    report.add_argument(
        "--spec", type=Path, metavar="FILE", help="a figure spec (default: the packaged one)"
    )
    report.add_argument(
        "--history",
        type=Path,
        metavar="FILE",
        help="a JSON file of a Keras History.history dict, for the training curves",
    )
    report.add_argument(
        "--samples",
        type=_positive_int,
        default=7000,
        help="synthetic training faces for the CAM head (default: %(default)s)",
    )
    report.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    report.add_argument(
        "--allow-unsafe",
        action="store_true",
        help="load a model that Keras' safe mode refuses (it runs code stored in the file, "
        "e.g. a Lambda layer): only for files you trust",
    )
    report.add_argument("--quiet", action="store_true", help="no progress bar")

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
    return parser


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


def main(argv=None) -> int:
    """Runs the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    # The command owns its process: hide TensorFlow's start-up chatter unless
    # the user asked for it.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        if args.command == "train":
            _train_command(args)
        elif args.command == "demo":
            _demo_command(args)
        elif args.command == "report":
            _report_command(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"keras-fer-viz {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


def load_splits(data: str, samples: int = 7000, seed: int = 0):
    """Train, validation and held-out splits for `--data`.

    Returns:
        A dict with keys "train", "val" and "test", each ``(x, y)``,
        "evidence" (the held-out faces' ground-truth masks, synthetic data
        only, else None) and "source", a short description.
    """
    import numpy as np
    from sklearn.model_selection import train_test_split

    from keras_fer_viz.data import synthetic_faces
    from keras_fer_viz.data.fer2013 import load_fer2013_usage

    if data == SYNTHETIC:
        faces = synthetic_faces(samples, seed=seed)
        held = synthetic_faces(max(700, samples // 5), seed=seed + 1)
        x, y = faces.images, faces.labels
        x_tr, x_va, y_tr, y_va = train_test_split(
            x, y, test_size=0.1, random_state=seed, stratify=y
        )
        return dict(
            train=(x_tr, y_tr),
            val=(x_va, y_va),
            test=(held.images, held.labels),
            evidence=held.evidence,
            source=f"synthetic faces (seed {seed})",
        )

    path = Path(data)
    if not path.is_file():
        raise FileNotFoundError(
            f"--data must be a FER2013 CSV file or '{SYNTHETIC}'. Received: {data!r} (no such file)"
        )
    x, y, usage = load_fer2013_usage(path)
    if usage is not None and {"Training", "PublicTest", "PrivateTest"} <= set(np.unique(usage)):
        pick = {u: usage == u for u in ("Training", "PublicTest", "PrivateTest")}
        return dict(
            train=(x[pick["Training"]], y[pick["Training"]]),
            val=(x[pick["PublicTest"]], y[pick["PublicTest"]]),
            test=(x[pick["PrivateTest"]], y[pick["PrivateTest"]]),
            evidence=None,
            source=f"{path.name} (Training / PublicTest / PrivateTest)",
        )
    stratify = y if np.bincount(y).min() >= 3 else None
    x_tr, x_rest, y_tr, y_rest = train_test_split(
        x, y, test_size=0.2, random_state=seed, stratify=stratify
    )
    stratify = y_rest if stratify is not None and np.bincount(y_rest).min() >= 2 else None
    x_va, x_te, y_va, y_te = train_test_split(
        x_rest, y_rest, test_size=0.5, random_state=seed, stratify=stratify
    )
    return dict(
        train=(x_tr, y_tr),
        val=(x_va, y_va),
        test=(x_te, y_te),
        evidence=None,
        source=f"{path.name} (random 80/10/10 split)",
    )


def _fit(args, splits, checkpoint: Path, callbacks=()):
    """Builds and trains the reference CNN; returns (model, history)."""
    import keras

    from keras_fer_viz.models import fer_cnn
    from keras_fer_viz.training import train

    keras.utils.set_random_seed(args.seed)
    x_tr, _ = splits["train"]
    model = fer_cnn(input_shape=tuple(int(d) for d in x_tr.shape[1:]), width=args.width)
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


def summarize(model, x, y) -> dict:
    """Held-out accuracy per class, as a JSON-ready dict with a text table."""
    import numpy as np

    from keras_fer_viz.data import EMOTIONS
    from keras_fer_viz.training import accuracy_table, per_class_accuracy

    per_class = per_class_accuracy(model, x, y)
    counts = np.bincount(y, minlength=model.output_shape[-1])
    overall = float(np.nansum(per_class * counts) / counts.sum())
    names = EMOTIONS if len(counts) == len(EMOTIONS) else [str(i) for i in range(len(counts))]
    return dict(
        overall_accuracy=overall,
        per_class={
            n: (None if np.isnan(a) else float(a)) for n, a in zip(names, per_class, strict=True)
        },
        counts={n: int(c) for n, c in zip(names, counts, strict=True)},
        table=accuracy_table(per_class, counts, names, overall),
    )


def _train_command(args) -> None:
    if args.out.suffix != ".keras":
        raise ValueError(f"--out must end in '.keras'. Received: {str(args.out)!r}")
    splits = load_splits(args.data, samples=args.samples, seed=args.seed)
    print(
        f"Training on {splits['source']}: {len(splits['train'][1])} train, "
        f"{len(splits['val'][1])} validation, {len(splits['test'][1])} held-out images."
    )
    model, _ = _fit(args, splits, checkpoint=args.out)
    summary = summarize(model, *splits["test"])
    print(f"\nBest model saved to {args.out}\nHeld-out accuracy per class:\n{summary['table']}")


def load_model(path: Path, allow_unsafe: bool = False):
    """Loads a .keras model in Keras' safe mode, with a clear refusal when it needs more."""
    import keras

    if not path.is_file():
        raise FileNotFoundError(f"--model: no such file: {str(path)!r}")
    try:
        return keras.saving.load_model(path, safe_mode=not allow_unsafe)
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
    splits = load_splits(args.data, samples=args.samples, seed=args.seed)
    result = write_report(
        model,
        *splits["test"],
        args.out,
        spec,
        history=history,
        train_data=splits["train"],
        evidence=splits["evidence"],
        verbose=0 if args.quiet else "auto",
    )
    _print_report(result)


def _print_report(result) -> None:
    print(f"\nWrote {len(result.figures)} figures and {result.index}.")
    for name, why in result.skipped.items():
        print(f"  skipped {name}: {why}")
    for name, why in result.failed.items():
        print(f"  FAILED {name}: {why}")


def _demo_command(args) -> None:
    from keras_fer_viz import _io

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
    probes, probe_labels = probe_faces(*splits["val"], seed=args.seed)
    watch = [
        SaliencyCallback(probes, probe_labels, out_dir=out / "epochs"),
        GradCAMCallback(probes, probe_labels, out_dir=out / "epochs"),
    ]
    model, history = _fit(args, splits, checkpoint=out / "model.keras", callbacks=watch)
    summary = summarize(model, *splits["test"])
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
        *splits["test"],
        out,
        history=logs,
        train_data=splits["train"],
        title="keras-fer-viz demo: the reference CNN on synthetic faces",
        epoch_maps={callback.name: callback.epoch_maps() for callback in watch},
        evidence=splits["evidence"],
        verbose=0 if args.quiet else "auto",
    )
    _print_report(result)
    print(f"Open {out / 'index.html'}. Done in {time.perf_counter() - start:.0f} s.")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
