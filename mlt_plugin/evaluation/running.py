"""The one frame loop (``run_sequence``) and the runner over (tracker, sequence, start) items (``run``).

Protocols are policies of the one loop: ``one-pass`` (OTB's: initialise once, track the rest) and
``restart`` (VOT's supervised experiment: a frame whose box has IoU 0 with a visible ground truth is a
failure, and the tracker is initialised again on the ground truth ``RESTART_SKIP`` frames later). The runner
times the tracker's own calls (initialize + track, not frame decoding), shows progress, writes each item's
result files when it ends (``results``), loads an item whose files exist instead of running it (resume),
and runs items in parallel processes (``workers``) or only every n-th sequence (``shard``).
"""
import multiprocessing
import os
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from mlt_plugin import metrics
from mlt_plugin.evaluation.results import load_result, save_result
from mlt_plugin.evaluation.starts import first_frame, start_box, start_ids, start_label

PROTOCOLS = ("one-pass", "restart")
RESTART_SKIP = 5  # frames from a failure to the re-initialisation (VOT's skip_initialize)


def tracker_name(params) -> str:
    """'MLT' for the default parameter set, 'MLT-<name>' otherwise (MLT-mt, MLT-paper, MLT-lite, ...):
    the toolkits' result folder names and the VOT trackers.ini sections."""
    return "MLT" if params == "default" else f"MLT-{params}"


@dataclass(frozen=True)
class TrackerSpec:
    """A tracker by parameter set (or 'mil') and overrides; built inside the process that runs it."""

    name: str
    params: object = "default"
    overrides: dict = field(default_factory=dict, hash=False)

    def build(self):
        from mlt_plugin.build import build_tracker

        return build_tracker(self.params, **self.overrides)


class _Built:
    """An already-built tracker object as a spec (runs in this process only)."""

    def __init__(self, tracker, name):
        self.tracker, self.name = tracker, name

    def build(self):
        return self.tracker


class _InitUpdate:
    """A got10k-style tracker (``init(image, box)``, ``update(image) -> box``, PIL RGB images)."""

    def __init__(self, tracker):
        self.tracker = tracker

    def initialize(self, image, box):
        from PIL import Image

        self.tracker.init(Image.fromarray(image), np.asarray(box, dtype=np.float64))

    def track(self, image):
        from PIL import Image

        return {"target_bbox": np.asarray(self.tracker.update(Image.fromarray(image)), dtype=np.float64)}


def as_spec(tracker):
    """Anything the runner takes: a spec (``name`` + ``build()``), an MLT-like object
    (``initialize``/``track``) or a got10k-style one (``init``/``update``), both with a ``name``."""
    if hasattr(tracker, "build"):
        return tracker
    name = getattr(tracker, "name", type(tracker).__name__)
    if hasattr(tracker, "initialize"):
        return _Built(tracker, name)
    if hasattr(tracker, "init") and hasattr(tracker, "update"):
        return _Built(_InitUpdate(tracker), name)
    raise ValueError(f"{tracker!r} is no tracker: give initialize/track, init/update, or a TrackerSpec")


def parse_shard(text):
    """'i/n' -> (i, n) with 0 <= i < n; None stays None."""
    if text is None or isinstance(text, tuple):
        return text
    parts = str(text).replace(" ", "").split("/")
    if len(parts) != 2 or not all(p.isdigit() for p in parts) or not 0 <= int(parts[0]) < int(parts[1]):
        raise ValueError(f"shard must be i/n with 0 <= i < n (e.g. 0/4), got {text!r}")
    return int(parts[0]), int(parts[1])


def run_sequence(tracker, sequence, max_frames=None, init_box=None, first=0, restart=False, hook=None,
                 skip=RESTART_SKIP):
    """Track one sequence: boxes (N, 4), per-frame tracker seconds (N,) and states (N,) (``metrics.TRACKED``,
    ``INITIALIZATION``, ``FAILURE``, ``SKIPPED``), boxes NaN before ``first``.

    One-pass: initialised on frame ``first`` with ``init_box`` (default: its ground truth). ``restart``: from
    ``first`` on the next frame with a visible target, on the ground truth, again ``skip`` frames after every
    failure; boxes NaN on every frame but the tracked ones, as its result file keeps them.
    ``hook(index, image, box)`` is called after each frame the tracker saw (progress, drawing, diagnostics).
    """
    count = len(sequence) if max_frames is None else min(len(sequence), max_frames)
    visible = sequence.visible[:count] & metrics.valid_ground_truth(sequence.boxes[:count])
    boxes, seconds = np.full((count, 4), np.nan), np.zeros(count)
    states = np.full(count, metrics.SKIPPED, dtype=np.int8)
    box = sequence.boxes[first] if init_box is None else np.asarray(init_box, dtype=np.float64)
    index, initialise = first, True
    while index < count:
        if initialise and restart:
            index = next((i for i in range(index, count) if visible[i]), count)
            if index == count:
                break
            box = sequence.boxes[index]
        image = sequence.frame(index)
        started = time.perf_counter()
        if initialise:
            tracker.initialize(image, box)
            boxes[index], states[index] = box, metrics.INITIALIZATION
        else:
            boxes[index], states[index] = tracker.track(image)["target_bbox"], metrics.TRACKED
        seconds[index] = time.perf_counter() - started
        if hook is not None:
            hook(index, image, boxes[index])
        if restart and not initialise and visible[index] and not metrics.iou(boxes[index], sequence.boxes[index]) > 0:
            states[index] = metrics.FAILURE  # NaN fails too
            index, initialise = index + skip, True
            continue
        index, initialise = index + 1, False
    if restart:
        boxes[states != metrics.TRACKED] = np.nan  # codes, not boxes
    return boxes, seconds, states


_BUILT = {}  # per process: trackers built once and reused across sequences


def _run_item(item):
    spec, sequence, start, max_frames, result_dir, bar, protocol, hook = item
    count = len(sequence) if max_frames is None else min(len(sequence), max_frames)
    label = f"{spec.name} {sequence.name} {start_label(start)}".rstrip()
    if spec not in _BUILT:
        _BUILT.clear()  # one tracker at a time: a worker moves on to the next tracker's items
        _BUILT[spec] = spec.build()
    from tqdm import tqdm

    # Worker processes print a line every 500 frames instead of bars that would interleave.
    progress = tqdm(total=count, desc=label, unit="frame", leave=False, disable=not bar)
    frame_hook = hook(spec.name, sequence, start, _BUILT[spec]) if hook is not None else None

    def on_frame(index, image, box):
        progress.update()
        if not bar and (index + 1) % 500 == 0:
            print(f"  {label}: frame {index + 1}/{count}", flush=True)
        if frame_hook is not None:
            frame_hook(index, image, box)

    restart = protocol == "restart"
    first = first_frame(sequence, start, count)
    try:
        boxes, seconds, states = run_sequence(_BUILT[spec], sequence, count, start_box(sequence.boxes[first], start),
                                              first, restart, on_frame)
    finally:
        progress.close()  # also on an error: its one-line message then stands alone
    boxes = boxes.round(3)  # what the result file holds: a fresh and a resumed run score alike
    if result_dir is not None:
        save_result(result_dir, spec.name, sequence, start, boxes, seconds, states if restart else None)
    return spec.name, sequence.name, start, (boxes, seconds, states) if restart else (boxes, seconds)


def _worker_init(threads):
    import torch

    torch.set_num_threads(threads)
    warnings.simplefilter("ignore")


def run(trackers, sequences, result_dir=None, starts=1, workers=1, shard=None, max_frames=None, log=print,
        protocol="one-pass", temporal_starts=0, hook=None):
    """Run every (tracker, sequence, start) not saved yet (``start_ids``); returns {tracker: {sequence:
    [(boxes, seconds)] per start}}, with (boxes, seconds, states) for ``protocol="restart"`` (one start: the
    restarts begin on the ground truth). ``hook(name, sequence, start, tracker)`` gives each item's per-frame
    hook (``run_sequence``); with one, every item runs in this process."""
    specs = [as_spec(t) for t in trackers]
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}: use one of {', '.join(PROTOCOLS)}")
    if protocol == "restart" and (starts != 1 or temporal_starts):
        raise ValueError("the restart protocol initialises on the ground truth after every failure: "
                         "no --starts or --temporal-starts with it")
    ids = start_ids(starts, temporal_starts)
    if max_frames is not None and max_frames < 2:
        raise ValueError(f"--frames must be at least 2 (the first frame only initialises), got {max_frames}")
    shard = parse_shard(shard)
    if shard is not None:
        sequences = sequences[shard[0]::shard[1]]
    results = {spec.name: {seq.name: [None] * len(ids) for seq in sequences} for spec in specs}
    todo = []
    for spec in specs:
        for seq in sequences:
            for start in ids:
                saved = None if result_dir is None else load_result(result_dir, spec.name, seq, start, max_frames,
                                                                     protocol)
                if saved is None:
                    todo.append((spec, seq, start))
                else:
                    results[spec.name][seq.name][ids.index(start)] = saved
    done = sum(len(v) for r in results.values() for v in r.values()) - len(todo)
    log(f"{len(specs)} tracker(s) x {len(sequences)} sequences x {len(ids)} start(s): {len(todo)} to run"
        + (f", {done} already saved in {result_dir}" if done else ""))
    local = any(isinstance(s, _Built) for s in specs)  # built objects stay in this process
    if workers > 1 and not local and hook is None and len(todo) > 1:
        threads = max(1, (os.cpu_count() or 1) // workers)
        items = [(spec, seq, start, max_frames, result_dir, False, protocol, None) for spec, seq, start in todo]
        context = multiprocessing.get_context("spawn")  # never fork a process that holds torch threads
        pool = context.Pool(workers, initializer=_worker_init, initargs=(threads,))
        try:
            _collect(pool.imap_unordered(_run_item, items), results, ids, len(items), log)
        except BaseException:
            pool.terminate()
            raise
        else:
            # Not terminate(), as `with Pool` does: workers that exit on their own run their finalizers, else
            # OpenVINO's (int8) leaves a semaphore behind and Python warns about it at exit.
            pool.close()
        finally:
            pool.join()
    else:
        outputs = (_run_item((spec, seq, start, max_frames, result_dir, True, protocol, hook))
                   for spec, seq, start in todo)
        _collect(outputs, results, ids, len(todo), log)
    _BUILT.clear()
    return results


def _collect(outputs, results, ids, total, log):
    for count, (name, seq_name, start, result) in enumerate(outputs, 1):
        results[name][seq_name][ids.index(start)] = result
        seconds = result[1]
        fps = np.count_nonzero(seconds) / max(float(np.sum(seconds)), 1e-9)
        log(f"[{count}/{total}] {name} {seq_name} {start_label(start)}".rstrip() + f": {fps:.1f} fps")
