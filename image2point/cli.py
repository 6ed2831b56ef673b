"""The ``image2point`` command line: parse, call the library, print. Bad input ends in one line and exit 2."""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path

from image2point.cli_contract import EXIT_BAD_INPUT  # noqa: F401  (re-exported: the status callers compare with)
from image2point.cli_contract import OneLineParser, parse_command_line, positive_finite, positive_int, refuse_existing
from image2point.cli_contract import field_names, require_positive, run_command, seed
from image2point.errors import Image2PointError
from image2point.inflate.shortcuts import DEFAULT_STRIDED_SHORTCUT, StridedShortcut

# What eval --out-dir writes.
EVAL_OUTPUTS = ("config.yaml", "metrics.json")
CONFIG_HELP = "YAML config (see configs/); omit for the defaults"
FRACTALDB_VAL_FRACTION = 0.2
# The options that set each FractalDB generator setting, named when a --store was made with other ones.
FRACTALDB_OPTIONS = {"num_categories": "--categories", "instances_per_category": "--instances", "seed": "--seed",
                     "image_size": "--image-size", "search_size": "--search-size", "patch_size": "--patch-size",
                     "points_per_pixel": "--points"}
OVERRIDES_HELP = "config overrides as dotted key=value, e.g. optim.lr=0.01 train.epochs=5"
GENERIC_PALETTE = "generic"
# Defaults of --chunk-points and --overlap-voxels as the help states them (importing them from
# image2point.inference.tiling would load numpy for every command); tests/test_cli.py checks they agree.
CHUNK_POINTS_DEFAULT_TEXT = "1000000"
OVERLAP_VOXELS_DEFAULT_TEXT = "32"


def _cmd_train(args: argparse.Namespace) -> None:
    from image2point.train.config import load_config
    from image2point.train.loop import run_training

    config = load_config(args.config, args.overrides)
    result = run_training(config, resume=args.resume or args.resume_with_changes, quiet=args.quiet,
                          resume_with_changes=args.resume_with_changes)
    final = result.final
    print(f"run directory: {result.run_dir}")
    print(f"overall accuracy {final.overall_accuracy:.4f}  mean class accuracy {final.mean_class_accuracy:.4f}  "
          f"mIoU {final.miou:.4f}  (best epoch {result.best_epoch})")


def _cmd_eval(args: argparse.Namespace) -> None:
    from image2point.train.config import load_config
    from image2point.io import json_out
    from image2point.train.loop import evaluate_checkpoint

    config = load_config(args.config, args.overrides)
    if args.out_dir is not None and not args.force:
        refuse_existing(Path(args.out_dir) / name for name in EVAL_OUTPUTS)
    metrics = evaluate_checkpoint(config, args.checkpoint, args.out_dir)
    print(json_out.dumps({"overall_accuracy": metrics.overall_accuracy,
                          "mean_class_accuracy": metrics.mean_class_accuracy, "miou": metrics.miou}, indent=2))
    if args.per_class:
        print(metrics.iou_table())


def _cmd_inflate(args: argparse.Namespace) -> None:
    from image2point.checkpoint import InflatedCheckpoint, save_inflated_checkpoint
    from image2point.checkpoint.integrity import require_finite_weights
    from image2point.errors import ConfigError
    from image2point.inflate.converter import convert_2d_to_3d
    from image2point.inference.outputs import commit_outputs
    from image2point.inflate.transforms import TRANSFORM_NAMES, unknown_transform_message
    from image2point.models2d import create_model_2d, load_pretrained_2d

    if args.transform not in TRANSFORM_NAMES:
        raise ConfigError(f"--transform: {unknown_transform_message(args.transform)}")
    model_2d = create_model_2d(args.arch, **({"num_classes": args.num_classes} if args.num_classes is not None else {}))
    load_report = load_pretrained_2d(model_2d, args.checkpoint)
    converted = convert_2d_to_3d(model_2d, args.transform, normalize=args.normalize, learnable_t=args.learnable_t,
                                 t_init=args.t_init, stride_mode=args.stride_mode, shortcut=args.shortcut)
    out = Path(args.out)
    report_path = out.with_suffix(".report.txt")
    if not args.force:
        refuse_existing((out, report_path))
    require_finite_weights(model_2d.state_dict(), args.checkpoint)
    inflated = InflatedCheckpoint(
        state_dict=dict(converted.model.state_dict()), architecture=args.arch, transform=args.transform,
        learnable_t=args.learnable_t, stride_mode=args.stride_mode, normalize=bool(args.normalize),
        shortcut=converted.report.shortcut.value)
    report_text = load_report.summary() + "\n" + converted.report.summary() + "\n"
    report_text += "".join(f"  inflated {k.name}: {list(k.shape_2d)} -> {list(k.shape_3d)}\n"
                           for k in converted.report.inflated)
    # Both files or neither: staged side by side, renamed into place once both are complete.
    commit_outputs({out: lambda staging: save_inflated_checkpoint(staging, inflated),
                    report_path: lambda staging: staging.write_text(report_text, encoding="utf-8")})
    print(report_text, end="")
    print(f"3D checkpoint: {out}\nreport: {report_path}")


def _cmd_pretrain2d(args: argparse.Namespace) -> None:
    from image2point.pretrain2d import fractal_runs
    from image2point.pretrain2d.train2d import Train2DConfig

    if args.dataset != "fractaldb":
        _pretrain_on_image_files(args)
        return
    # Both check their arguments, so a bad one stops the command before anything is written.
    fractal_config = fractal_runs.generator_config(args.categories, args.instances, args.image_size,
                                                   args.search_size, args.patch_size, args.points)
    config = Train2DConfig(epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.lr, seed=args.seed)
    val_fraction = args.val_fraction if args.val_fraction is not None else FRACTALDB_VAL_FRACTION
    if not 0 < val_fraction < 1:
        raise Image2PointError(f"--val-fraction must be in (0, 1), got {val_fraction}")
    run = fractal_runs.FractalPretraining(fractal_config, config, args.arch, val_fraction, Path(args.run_dir),
                                          None if args.store is None else Path(args.store))
    arguments = {key: value for key, value in vars(args).items() if key not in ("handler", "debug")}
    result = fractal_runs.pretrain_fractaldb_run(run, _pretraining_model_factory(args.arch), arguments,
                                                 fractal_runs.RunOptions("--run-dir", "--store", FRACTALDB_OPTIONS))
    print(f"FractalDB: {args.categories} categories x {args.instances} instances at {args.image_size} px" +
          ("" if result.store is None else f", store {result.store.path} (sha256 {result.store.content_sha256})"))
    print(f"{args.arch}: validation top-1 {result.training.top1:.4f}; checkpoint {result.checkpoint}")


def _pretraining_model_factory(arch: str):
    """Number of classes -> the model ``arch`` names: a PointNet++ on pixels, or a 2D registry model."""
    from image2point.models.pointnet2 import PIXEL_PRETRAINING_ARCH, pixel_pretraining_network
    from image2point.models2d import list_models_2d

    if arch == PIXEL_PRETRAINING_ARCH:
        return pixel_pretraining_network
    if arch not in list_models_2d():
        raise Image2PointError(f"unknown 2D model {arch!r}; available: {', '.join(list_models_2d())}, "
                               f"{PIXEL_PRETRAINING_ARCH}")
    return functools.partial(_model_2d_with_classes, arch)


def _model_2d_with_classes(arch: str, num_classes: int):
    from image2point.models2d import create_model_2d

    return create_model_2d(arch, num_classes=num_classes)


def _pretrain_on_image_files(args: argparse.Namespace) -> None:
    from image2point.pretrain2d.real_images import pretrain_on_images

    if args.root is None:
        raise Image2PointError(f"--root must name the {args.dataset} directory")
    if args.store is not None:
        raise Image2PointError(f"--store: only --dataset fractaldb renders a store, not {args.dataset}")
    result = pretrain_on_images(args.dataset, args.root, args.arch, args.epochs, args.batch_size, args.lr, args.seed,
                                args.run_dir, val_fraction=args.val_fraction, image_size=args.image_size,
                                model_factory=_pretraining_model_factory(args.arch))
    print(f"{args.arch} on {args.dataset}: validation top-1 {result.top1:.4f}; run directory {args.run_dir}")


def _cmd_predict(args: argparse.Namespace) -> None:
    from image2point.inference.files import predict_files
    from image2point.inference.model import load_model
    from image2point.inference.tiling import DEFAULT_CHUNK_POINTS, DEFAULT_OVERLAP_VOXELS

    chunk_points = DEFAULT_CHUNK_POINTS if args.chunk_points is None else args.chunk_points
    overlap = DEFAULT_OVERLAP_VOXELS if args.overlap_voxels is None else args.overlap_voxels
    require_positive("--chunk-points", chunk_points)
    if overlap < 0:
        raise Image2PointError(f"--overlap-voxels must be at least 0, got {overlap}")
    if args.voxel_size is not None:
        require_positive("--voxel-size", args.voxel_size)
    model = load_model(args.checkpoint, args.device)

    def report(result) -> None:
        parts = [f"{result.source}: {result.num_points} points"]
        if result.num_tiles > 1:
            parts.append(f"{result.num_tiles} tiles")
        if result.top_k:
            name, probability = result.top_k[0]
            parts.append(f"class {name} ({probability:.3f})")
        if result.metrics is not None:
            parts.append(f"accuracy {result.metrics.overall_accuracy:.4f} mIoU {result.metrics.miou:.4f}")
        print(", ".join(parts) + f" -> {', '.join(path.name for path in result.outputs)}")

    run = predict_files(model, args.inputs, args.out_dir, fields=field_names(args.fields), voxel_size=args.voxel_size,
                        save_probabilities=args.probabilities, chunk_points=chunk_points, labels=args.labels,
                        force=args.force, on_file=report, overlap_voxels=overlap)
    print(f"{len(run.files)} file(s) predicted into {args.out_dir}")
    if run.metrics is not None:
        print(f"overall accuracy {run.metrics.overall_accuracy:.4f}  mean class accuracy "
              f"{run.metrics.mean_class_accuracy:.4f}  mIoU {run.metrics.miou:.4f}")


def _cmd_visualize(args: argparse.Namespace) -> None:
    from image2point.errors import DataError
    from image2point.io import read_labels, read_point_cloud
    from image2point.io.readers import LABEL_FIELD
    from image2point.data.registry import dataset_entry
    from image2point.inference.labels import label_classes
    from image2point.viz import MAX_GENERIC_CLASSES, generic_palette, render_png

    scheme = None
    if args.palette != GENERIC_PALETTE:
        try:
            scheme = dataset_entry(args.palette).labels(None).scheme()
        except Image2PointError as error:
            raise Image2PointError(f"--palette: {error}") from None
    out = Path(args.out) if args.out else Path(args.file).with_suffix(".png")
    if out.exists() and not args.force:
        raise Image2PointError(f"{out}: exists; pass --force to replace it")
    cloud = read_point_cloud(args.file, field_names(args.fields))
    pred = label_classes(read_labels(args.pred), scheme, args.pred) if args.pred else None
    if args.gt:
        gt = label_classes(read_labels(args.gt), scheme, args.gt)
    elif LABEL_FIELD in cloud.fields:
        gt = label_classes(cloud.fields[LABEL_FIELD], scheme, cloud.source)
    else:
        gt = None
    for what, source, values in (("--pred", args.pred, pred), ("ground truth", args.gt or args.file, gt)):
        if values is None:
            continue
        if values.size and int(values.max()) >= MAX_GENERIC_CLASSES:
            raise DataError(f"label {int(values.max())} is beyond the {MAX_GENERIC_CLASSES} classes a picture can "
                            "colour", source)
        if len(values) != cloud.num_points:
            raise Image2PointError(f"{what}: {len(values)} labels for the {cloud.num_points} points of {args.file}")
    shown, name = (pred, "prediction") if pred is not None else (gt, "ground truth")
    render_png(cloud.points - cloud.points.min(axis=0), shown, gt if pred is not None else None,
               generic_palette(0) if scheme is None else scheme.palette,
               None if scheme is None else scheme.class_names, out=out, title=Path(args.file).name,
               labels_name=name)
    print(f"picture: {out}")


def _cmd_export(args: argparse.Namespace) -> None:
    from image2point.inference.export import export_checkpoint

    files = export_checkpoint(args.checkpoint, args.out, force=args.force)
    tied = f" ({len(files.tied)} tied names stored once)" if files.tied else ""
    print(f"weights: {files.weights} ({files.num_tensors} tensors{tied})\nconfig: {files.config}")


def _cmd_experiment(args: argparse.Namespace) -> None:
    from image2point.experiments import ExperimentRequest, make_context, parse_seeds, run_experiment
    context = make_context(args.scale, args.out_dir, args.weights, args.data_root, args.folds)
    run_experiment(ExperimentRequest(args.name, context, parse_seeds(args.seeds), args.dry_run, args.aggregate_only,
                                     tuple(args.claim)))


def _cmd_env(args: argparse.Namespace) -> None:
    from image2point.environment import collect_environment

    report = collect_environment()
    print(json.dumps(report.to_json(), indent=2) if args.json else "\n".join(report.lines()))


def _split_config_and_overrides(args: argparse.Namespace) -> None:
    """``image2point train optim.lr=0.1`` has no config file: its first word is an override."""
    if getattr(args, "config", None) and "=" in args.config and not Path(args.config).exists():
        args.overrides = [args.config, *args.overrides]
        args.config = None


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="image2point", description=__doc__)
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    train = commands.add_parser("train", help="finetune a transferred network")
    train.add_argument("config", nargs="?", help=CONFIG_HELP)
    train.add_argument("overrides", nargs="*", help=OVERRIDES_HELP)
    train.add_argument("--resume", action="store_true", help="continue the run in train.run_dir from last.pt")
    train.add_argument("--resume-with-changes", action="store_true", help="resume with a changed config, recorded "
                       "as config.resumed-at-epoch-N.yaml")
    train.add_argument("--quiet", action="store_true", default=None, help="no progress bars")
    train.set_defaults(handler=_cmd_train)

    evaluate = commands.add_parser("eval", help="evaluate a checkpoint on the config's evaluation split")
    evaluate.add_argument("config", help=CONFIG_HELP)
    evaluate.add_argument("checkpoint", help="last.pt or best.pt of a run")
    evaluate.add_argument("overrides", nargs="*", help=OVERRIDES_HELP)
    evaluate.add_argument("--out-dir", help="write config.yaml and metrics.json here")
    evaluate.add_argument("--per-class", action="store_true", help="print the per-class IoU table")
    evaluate.add_argument("--force", action="store_true", help="replace config.yaml and metrics.json in --out-dir")
    evaluate.set_defaults(handler=_cmd_eval)

    inflate = commands.add_parser("inflate", help="2D checkpoint -> 3D checkpoint plus a conversion report")
    inflate.add_argument("--arch", required=True, help="2D architecture, e.g. resnet18, cifar_resnet56")
    inflate.add_argument("--checkpoint", required=True, help="2D weights (torchvision/timm or our own)")
    inflate.add_argument("--out", required=True, help="3D checkpoint to write")
    inflate.add_argument("--num-classes", type=positive_int, help="classifier width of the 2D checkpoint")
    inflate.add_argument("--transform", default="default",
                         help="filter transform: default (the authors'), copy_x, copy_y, copy_z, copy_x_transposed, "
                              "copy_y_transposed, copy_z_transposed (image2point.inflate.transforms)")
    inflate.add_argument("--normalize", action="store_true", help="divide T by K")
    inflate.add_argument("--learnable-t", default="none", choices=("none", "shared", "per_conv"))
    inflate.add_argument("--t-init", default="default", choices=("default", "random"))
    inflate.add_argument("--stride-mode", default="floor", choices=("floor", "window"))
    inflate.add_argument("--shortcut", default=DEFAULT_STRIDED_SHORTCUT.value,
                         choices=tuple(member.value for member in StridedShortcut),
                         help="how strided 1x1 shortcuts read their children (docs/fidelity.md)")
    inflate.add_argument("--force", action="store_true", help="replace an existing output")
    inflate.set_defaults(handler=_cmd_inflate)

    pretrain = commands.add_parser("pretrain2d", help="pretrain a 2D network offline (FractalDB or image files)")
    pretrain.add_argument("--dataset", default="fractaldb",
                          choices=("fractaldb", "tiny-imagenet", "imagefolder", "mnist"))
    pretrain.add_argument("--root", help="dataset directory (tiny-imagenet, imagefolder, mnist)")
    pretrain.add_argument("--arch", default="cifar_resnet20",
                          help="a 2D model (cifar_resnet20, resnet18, ...) or pointnet2_ssg (each pixel a point)")
    pretrain.add_argument("--categories", type=int, default=10, help="FractalDB categories")
    pretrain.add_argument("--instances", type=int, default=32, help="FractalDB images per category")
    pretrain.add_argument("--image-size", type=int, default=32, help="square image side (images are resized)")
    pretrain.add_argument("--search-size", type=int, default=128, help="FractalDB category search resolution")
    pretrain.add_argument("--patch-size", type=positive_int, default=1, help="FractalDB: side of the patch drawn "
                                                                             "at each point (the paper's: 3)")
    pretrain.add_argument("--points", type=positive_int, help="FractalDB: chaos-game points per image (the "
                                                              "paper's: 200000); default ~0.38 per pixel")
    pretrain.add_argument("--store", metavar="DIR", help="FractalDB: render into DIR (resumed, reused if its settings "
                                                         "match) and read it per image, not in memory")
    pretrain.add_argument("--epochs", type=int, default=10)
    pretrain.add_argument("--batch-size", type=int, default=64)
    pretrain.add_argument("--lr", type=positive_finite, default=0.1)
    pretrain.add_argument("--val-fraction", type=float, default=None,
                          help="held-out fraction (FractalDB: 0.2; Tiny-ImageNet uses its own val split)")
    pretrain.add_argument("--seed", type=seed, default=0)
    pretrain.add_argument("--run-dir", required=True, help="new directory for config.yaml, metrics.json, model.pt")
    pretrain.set_defaults(handler=_cmd_pretrain2d)

    predict = commands.add_parser("predict", help="run a trained network on point cloud files")
    predict.add_argument("checkpoint", help="last.pt / best.pt of a run, or an exported NAME.safetensors")
    predict.add_argument("inputs", nargs="+", help="point cloud files, directories or glob patterns")
    predict.add_argument("--out-dir", required=True, help="directory for the predictions")
    predict.add_argument("--fields", help="column names, e.g. x,y,z,intensity (files without names) or fields to "
                                          "read; those after x,y,z are the network's features")
    predict.add_argument("--voxel-size", type=float, help="voxel size; default: the training voxel size")
    predict.add_argument("--probabilities", action="store_true", help="also write NAME.probs.npy")
    predict.add_argument("--labels", help="ground truth: a labels file (one input) or a directory of NAME.label etc.")
    predict.add_argument("--chunk-points", type=int,
                         help=f"most points per tile (default {CHUNK_POINTS_DEFAULT_TEXT}); larger scenes are predicted "
                              "tile by tile")
    predict.add_argument("--overlap-voxels", type=int,
                         help="voxels each tile reads beyond its own part on every side (default "
                              f"{OVERLAP_VOXELS_DEFAULT_TEXT})")
    predict.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    predict.add_argument("--force", action="store_true", help="replace existing outputs")
    predict.set_defaults(handler=_cmd_predict)

    visualize = commands.add_parser("visualize", help="PNG of a point cloud, its predicted and true labels")
    visualize.add_argument("file", help="point cloud file")
    visualize.add_argument("--pred", help="predicted labels (NAME.labels.npy, a .label file, text)")
    visualize.add_argument("--gt", help="ground-truth labels; default: the file's labels field, if any")
    visualize.add_argument("--fields", help="column names of a file without them, e.g. x,y,z,intensity")
    visualize.add_argument("--palette", default=GENERIC_PALETTE,
                           help="class colours and names: generic, or those of a registered dataset (a data.name)")
    visualize.add_argument("--out", help="PNG to write; default: FILE with the suffix .png")
    visualize.add_argument("--force", action="store_true", help="replace an existing PNG")
    visualize.set_defaults(handler=_cmd_visualize)

    export = commands.add_parser("export", help="trained checkpoint -> NAME.safetensors + NAME.config.yaml")
    export.add_argument("checkpoint", help="last.pt or best.pt of a run")
    export.add_argument("--out", required=True, help="NAME (or NAME.safetensors) of the export")
    export.add_argument("--force", action="store_true", help="replace existing files")
    export.set_defaults(handler=_cmd_export)

    experiment = commands.add_parser("experiment", help="run a table of the paper as a grid of runs, then aggregate it")
    experiment.add_argument("name", help="table1 ... table14 (8-14: stability of 1-7), all, convergence, or claims")
    experiment.add_argument("--scale", default="small", choices=("small", "paper"),
                            help="small: CPU-sized runs on ../shared samples; paper: the paper's recipes (GPUs)")
    experiment.add_argument("--seeds", help="a count (3: seeds 0,1,2) or a list (0,1,2); default 3, paper: the paper's")
    experiment.add_argument("--out-dir", default="runs/experiments", help="runs go to OUT/<table>/<run id>/")
    experiment.add_argument("--dry-run", action="store_true", help="list the protocol and every run; write nothing")
    experiment.add_argument("--weights", action="append", default=[], metavar="SOURCE=PATH",
                            help="a checkpoint for a weights source (imagenet, cityscapes, ...; SOURCE:ARCH=PATH "
                                 "for one architecture)")
    experiment.add_argument("--data-root", action="append", default=[], metavar="DATASET=PATH",
                            help="a dataset directory (modelnet40, s3dis, semantickitti, tiny-imagenet, mnist)")
    experiment.add_argument("--aggregate-only", action="store_true", help="only rebuild tables and figures")
    experiment.add_argument("--folds", action="store_true", help="cross-validate (small: docs/statistics.md)")
    experiment.add_argument("--claim", action="append", default=[], metavar="NAME",
                            help="claims only: train the runs of this claim ('b': every claim (b); 'b · ModelNet40': "
                                 "that one); repeatable; default: every claim. Every claim is judged")
    experiment.set_defaults(handler=_cmd_experiment)

    env = commands.add_parser("env", help="versions, GPUs, and the sparse backend per device and why")
    env.add_argument("--json", action="store_true", help="print the report as JSON")
    env.set_defaults(handler=_cmd_env)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parse_command_line(build_parser(), argv)
    if args.command == "train":
        _split_config_and_overrides(args)
    return run_command(args.command, lambda: args.handler(args), args.debug)


if __name__ == "__main__":
    sys.exit(main())
