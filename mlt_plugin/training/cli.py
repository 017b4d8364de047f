"""`mlt train matching|mt|meta`: argument parsing for the training stages."""
import sys

from mlt_plugin.networks.extractors import EXTRACTORS
from mlt_plugin.training import split
from mlt_plugin.training.datasets import load_source, parse_source_spec


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "train",
        help="train the backbone (classification), the matching network (eq. 6), MLT-mt, the meta-learner (eq. 7) "
        "or the box head",
        description="Sources are KIND:ROOT[:WEIGHT] (KIND seq: any OTB/VOT/LaSOT/GOT-10k/UAV123/UAVDT/DTB70/DAVIS root; "
        "vid: ILSVRC VID, the ILSVRC2015 folder or a folder under Data/VID; coco: YOLO still images; "
        "tinyimagenet: labelled stills, the tiny-imagenet-200 folder or its train/ (both: the train part) or its val/ "
        "(held-out images for the backbone stage's --val-source)). "
        "Without --source: the training split of ../shared/data (videos only for the meta stage).",
    )
    parser.add_argument("stage", choices=["backbone", "matching", "mt", "meta", "box"],
                        help="backbone: conv1-4 classify labelled objects (general features), the --init of matching / mt; "
                        "box: the box head on the frozen --extractor (box_stage.py)")
    parser.add_argument("--source", action="append", default=[], help="KIND:ROOT[:WEIGHT], repeatable")
    parser.add_argument("--exclude", nargs="*", default=None,
                        help="sequence names never to train on (default with the shared data: the validation split)")
    parser.add_argument("--data", help="shared data folder for the default sources (default: $MLT_DATA or ../shared/data)")
    parser.add_argument("--out", required=True, help="run folder: checkpoint.pt, log.csv, exported weights")
    parser.add_argument("--iterations", type=int, default=None, help="default: 95000 (matching, mt) / 11000 (meta)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--matching-weights", help="meta stage: the matching stage's matching.safetensors")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt (at the --lr given: a step decay)")
    parser.add_argument("--init", metavar="WEIGHTS", help="warm start: the trained network's weights from a weight file "
                        "(e.g. the shipped mlt_plugin/weights/mlt.safetensors), with a fresh optimiser; mt may start "
                        "from MLT's 192-channel file, its 32 extra channels starting with small gains; matching from an MLT-mt "
                        "file keeps its first 192 channels")
    parser.add_argument("--checkpoint-every", type=int, default=500)
    parser.add_argument("--log-every", type=int, default=None,
                        help="a log.csv row (mean loss of the steps, over every process) every N steps "
                        "(default 1 on CPU, 20 on CUDA: reading the loss waits for the GPU)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda when available)")
    parser.add_argument("--amp", action="store_true", help="autocast: bf16 on CPU and on GPUs with bf16, else fp16 with "
                        "loss scaling; steps with a non-finite loss are skipped, 5 in a row stop the run")
    parser.add_argument("--workers", type=int, default=2, help="data loader processes")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--val-source", action="append", default=[],
                        help="KIND:ROOT whose select-half validation sequences (split.py) give validation pairs / episodes; "
                        "backbone stage: all of its labelled images (e.g. Tiny ImageNet val)")
    parser.add_argument("--val-every", type=int, default=100, help="validation every N steps")
    parser.add_argument("--val-batches", type=int, default=10,
                        help="fixed validation batches per check (more: a less noisy validation loss)")
    parser.add_argument("--search-size", type=int, default=255,
                        help="matching stages: search crop side for training (255 as the tracker; smaller is faster)")
    parser.add_argument("--train-last-layer", action="store_true",
                        help="matching stages: train only w5/bn5 and the response scale on conv1-4 as loaded by --init "
                        "(frozen, batch-norm statistics included), e.g. MLT-mt's 224 channels on MLT's backbone")
    parser.add_argument("--train-blocks", type=int, default=0,
                        help="matching stages, --extractor lite: also fine-tune the extractor's last N blocks (of 11; "
                        "9-11 are its stride-16 stage), earlier ones frozen, batch-norm statistics kept")
    parser.add_argument("--backbone-lr-factor", type=float, default=0.1,
                        help="--train-blocks: the extractor's learning rate as a fraction of --lr")
    parser.add_argument("--extractor", choices=list(EXTRACTORS), default="paper",
                        help="matching stages: the feature extractor under the last layer (lite: EfficientNet-Lite0 "
                        "from ImageNet, trained with --train-last-layer on its package weights); meta: from --matching-weights")
    parser.add_argument("--teacher", metavar="DIR",
                        help="matching stages: NanoTrack v2's folder (e.g. ../shared/models/nanotrack_v2); its outputs on "
                        "every training pair add a distillation term to eq. (6) (--distill)")
    parser.add_argument("--distill", choices=["map", "features", "both"], default="map",
                        help="--teacher: what the student learns from it: its response map (a soft label), its search "
                        "features (conv4 through a learned 1x1 projection, cosine), or both")
    parser.add_argument("--distill-weight", type=float, default=1.0, help="--teacher: weight of each distillation term")
    parser.add_argument("--weight-decay", type=float, default=0.0, help="Adam L2 penalty (meta-learner regularisation)")
    cache = parser.add_argument_group("caches (built once when absent, reused when present)")
    cache.add_argument("--feature-cache", metavar="DIR",
                       help="meta stage, and matching stages with --train-last-layer: cache the frozen extractor's features (conv4) of augmented crops")
    cache.add_argument("--cache-frames", type=int, default=40, help="feature cache: frames per trajectory at most")
    cache.add_argument("--cache-crops", type=int, default=2, help="feature cache: augmented search crops per frame")
    cache.add_argument("--still-crops", type=int, default=8,
                       help="feature cache: heavily augmented crops per still-image object (coco, tinyimagenet sources; meta stage)")
    cache.add_argument("--max-stills", type=int, default=200, help="feature cache: still-image objects at most")
    cache.add_argument("--crop-cache", metavar="DIR", help="pre-crop every visible frame around its target once")
    cache.add_argument("--prepare-only", action="store_true", help="build the caches and exit without training")
    parser.set_defaults(func=run)


def default_sources(exclude, stills=True, data=None):
    """The training split of the shared data; ``stills`` adds the COCO images (not for the meta stage,
    whose episodes need a trajectory's changing appearance, and which the paper trains on videos)."""
    folder = split.data_dir(data)
    sources = [("seq", str(folder / root), weight) for root, weight in split.TRAIN_ROOTS.items()]
    if stills:
        sources.append(("coco", str(folder / split.COCO_ROOT), split.COCO_WEIGHT))
    return sources, exclude


def run(args):
    from mlt_plugin.training.trainer import TrainingDiverged, train

    # Without --exclude the validation sequences (and Biker470, a longer cut of Biker) are never trained on.
    validation = set(split.VALIDATION) | split.HELD_OUT
    if args.source:
        specs, exclude = [parse_source_spec(s) for s in args.source], validation if args.exclude is None else set(args.exclude)
    else:
        exclude = validation if args.exclude is None else set(args.exclude)
        specs, exclude = default_sources(exclude, stills=args.stage != "meta", data=args.data)
    sources = [load_source(kind, root, weight, exclude) for kind, root, weight in specs]
    for source in sources:
        print(f"source {source.kind}:{source.root} weight {source.weight}: {len(source.trajectories)} trajectories")
    val_sources, select = [], set(split.validation_names("select"))
    for kind, root, weight in (parse_source_spec(s) for s in args.val_source):
        try:
            source = load_source(kind, root, weight)
        except ValueError:
            continue
        if args.stage != "backbone":  # the backbone stage's held-out images are a source of their own (Tiny ImageNet val)
            # Checkpoints are chosen here: on the select half only, the report half stays for claims.
            source.trajectories = [t for t in source.trajectories if t.name in select]
        if source.trajectories:
            val_sources.append(source)
            names = source.trajectories if len(source.trajectories) <= 20 else []
            print(f"validation {kind}:{root}: {len(source.trajectories)} trajectories {' '.join(t.name for t in names)}")
    iterations = args.iterations or {"meta": 11000, "backbone": 20000, "box": 5000}.get(args.stage, 95000)
    try:
        loss = train(args.stage, sources, args.out, iterations, args.batch_size, args.lr, args.device, args.amp,
                     args.workers, args.seed, args.resume, args.checkpoint_every, args.matching_weights, args.threads,
                     feature_cache=args.feature_cache, cache_frames=args.cache_frames, cache_crops=args.cache_crops,
                     crop_cache=args.crop_cache, prepare_only=args.prepare_only, weight_decay=args.weight_decay,
                     still_crops=args.still_crops, max_stills=args.max_stills, val_sources=val_sources,
                     val_every=args.val_every, val_batches=args.val_batches, init=args.init, search_size=args.search_size,
                     last_layer_only=args.train_last_layer, extractor=args.extractor, teacher=args.teacher,
                     distill_weight=args.distill_weight, distill=args.distill, train_blocks=args.train_blocks,
                     backbone_lr_factor=args.backbone_lr_factor, log_every=args.log_every)
    except TrainingDiverged as err:
        print(f"mlt train: error: {err}", file=sys.stderr)
        return 3
    if args.prepare_only:
        print("caches ready")
    else:
        print(f"final loss {loss:.4f}; weights exported to {args.out}")
