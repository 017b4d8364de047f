"""Training pipeline: dataset readers on real formats, samplers, caches, both stages, resume, DDP.

Everything is tiny (a few frames, batch 2, a handful of iterations, one CPU thread): the point is
that each piece does what it says, not how well a network trains.
"""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mlt_plugin.cli import main
from mlt_plugin.networks import MatchingNetwork, save_weights
from mlt_plugin.networks.weights_io import load_box_head, load_matching, load_weights
from mlt_plugin.sequences import read_boxes
from mlt_plugin.training.crop_cache import CROP_SIZE, prepare_crop_cache
from mlt_plugin.training.datasets import load_source, load_vid, parse_source_spec
from mlt_plugin.training.feature_cache import CachedEpisodeDataset, _FrameCrops, cached_frames, prepare_feature_cache
from mlt_plugin.training.sampling import CropSampler, EpisodeDataset, PairDataset
from mlt_plugin.training.trainer import MatchingStage, MetaStage

REPO = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("one_thread")


def _link_frames(source_dir, target_dir, count, name="{:08d}.jpg", start=1):
    target_dir.mkdir(parents=True, exist_ok=True)
    frames = sorted(source_dir.glob("*.jpg"))[:count]
    for n, frame in enumerate(frames):
        (target_dir / name.format(n + start)).symlink_to(frame)
    return frames


@pytest.fixture
def bird(shared_data):
    """OTB Bird2: (frames folder, 0-based boxes)."""
    folder = shared_data / "otb" / "Bird2"
    return folder / "img", read_boxes(folder / "groundtruth_rect.txt", one_based=True)


@pytest.fixture
def tiny_source(bird, tmp_path):
    """A 6-frame OTB-layout sequence (symlinked Bird2 frames) as a training source."""
    img, boxes = bird
    folder = tmp_path / "tiny" / "Bird2"
    _link_frames(img, folder / "img", 6, "{:04d}.jpg")
    np.savetxt(folder / "groundtruth_rect.txt", boxes[:6] + [1, 1, 0, 0], fmt="%g", delimiter=",")
    return load_source("seq", str(tmp_path / "tiny"))


@pytest.fixture
def matching_weights(tmp_path):
    """A freshly exported random matching network (never the one a real run is writing)."""
    torch.manual_seed(0)
    path = tmp_path / "matching.safetensors"
    save_weights(path, MatchingNetwork())
    return path


# ---------------------------------------------------------------- readers


def _vid_xml(folder, frame, objects):
    lines = ["<annotation>", f"  <folder>{folder}</folder>", f"  <filename>{frame:06d}</filename>",
             "  <size><width>720</width><height>400</height></size>"]
    for trackid, (x, y, w, h), occluded in objects:
        lines += ["  <object>", f"    <trackid>{trackid}</trackid>", "    <name>n01503061</name>",
                  f"    <bndbox><xmax>{x + w:g}</xmax><xmin>{x:g}</xmin><ymax>{y + h:g}</ymax><ymin>{y:g}</ymin></bndbox>",
                  f"    <occluded>{int(occluded)}</occluded>", "    <generated>0</generated>", "  </object>"]
    return "\n".join(lines + ["</annotation>"]) + "\n"


@pytest.fixture
def vid_root(shared_data, tmp_path):
    """An ILSVRC2015 VID folder with one train snippet made from OTB Jogging (two tracked people)."""
    otb = shared_data / "otb" / "Jogging"
    boxes = [read_boxes(otb / f"groundtruth_rect.{k}.txt", one_based=True)[:5] for k in (1, 2)]
    root = tmp_path / "ILSVRC2015"
    snippet = "ILSVRC2015_VID_train_0000/ILSVRC2015_train_00000000"
    _link_frames(otb / "img", root / "Data/VID/train" / snippet, 5, "{:06d}.JPEG", start=0)
    annotations = root / "Annotations/VID/train" / snippet
    annotations.mkdir(parents=True)
    for n in range(5):
        objects = [(0, boxes[0][n], n == 3)]  # track 0 occluded in frame 3
        if n != 2:  # track 1 absent from frame 2
            objects.append((1, boxes[1][n], False))
        (annotations / f"{n:06d}.xml").write_text(_vid_xml(snippet, n, objects))
    return root, boxes


def test_vid_reader_gives_one_trajectory_per_track(vid_root):
    root, boxes = vid_root
    trajectories = load_vid(root)
    assert [t.name for t in trajectories] == ["ILSVRC2015_train_00000000#0", "ILSVRC2015_train_00000000#1"]
    first, second = trajectories
    assert len(first) == 5 and first.frames[0].name == "000000.JPEG"
    np.testing.assert_allclose(first.boxes, boxes[0])
    assert first.visible.tolist() == [True, True, True, False, True]  # occluded: not visible
    assert second.visible.tolist() == [True, True, False, True, True]  # absent: not visible
    assert np.isnan(second.boxes[2]).all()
    np.testing.assert_allclose(second.boxes[[0, 1, 3, 4]], boxes[1][[0, 1, 3, 4]])
    assert second.frame(0).shape == (288, 352, 3)
    # A folder under Data/VID reads the same snippet; the source kind is 'vid'.
    assert len(load_vid(root / "Data" / "VID" / "train")) == 2
    assert len(load_source(*parse_source_spec(f"vid:{root}:2")[:2]).trajectories) == 2
    assert parse_source_spec(f"vid:{root}:2") == ("vid", str(root), 2.0)


def test_vid_reader_names_a_bad_file(vid_root):
    root, _ = vid_root
    bad = next((root / "Annotations").rglob("000001.xml"))
    bad.write_text("<annotation><object><trackid>0</trackid></object></annotation>")
    with pytest.raises(ValueError, match="000001.xml"):
        load_vid(root)
    with pytest.raises(ValueError, match="not an ILSVRC VID folder"):
        load_vid(root / "Annotations")


@pytest.fixture
def got10k_root(bird, tmp_path):
    """A GOT-10k train folder: 6 Bird2 frames, 0-based boxes, absence.label / cover.label, meta_info.ini."""
    img, boxes = bird
    root = tmp_path / "GOT-10k"
    folder = root / "train" / "GOT-10k_Train_000001"
    _link_frames(img, folder, 6)
    np.savetxt(folder / "groundtruth.txt", boxes[:6], fmt="%.4f", delimiter=",")
    (folder / "absence.label").write_text("0\n0\n1\n0\n0\n0\n")
    (folder / "cover.label").write_text("8\n8\n0\n8\n0\n8\n")  # frame 4: fully occluded, not absent
    (folder / "cut_by_image.label").write_text("0\n" * 6)
    (folder / "meta_info.ini").write_text("[METAINFO]\nobject_class: bird\n")
    (root / "train" / "list.txt").write_text("GOT-10k_Train_000001\n")
    return root, boxes[:6]


def test_got10k_folder_reads_with_absence(got10k_root):
    root, boxes = got10k_root
    (trajectory,) = load_source("seq", str(root)).trajectories
    assert trajectory.name == "GOT-10k_Train_000001" and len(trajectory) == 6
    np.testing.assert_allclose(trajectory.boxes, boxes, atol=1e-4)  # GOT-10k boxes are 0-based
    assert not trajectory.visible[2]


def test_got10k_cover_zero_is_not_visible(got10k_root):
    root, _ = got10k_root
    (trajectory,) = load_source("seq", str(root)).trajectories
    assert trajectory.visible.tolist() == [True, True, False, True, False, True]


def test_lasot_folder_reads_with_occlusion_and_out_of_view(bird, tmp_path):
    img, boxes = bird
    root = tmp_path / "LaSOT"
    folder = root / "bird" / "bird-1"
    _link_frames(img, folder / "img", 6)
    np.savetxt(folder / "groundtruth.txt", boxes[:6] + [1, 1, 0, 0], fmt="%g", delimiter=",")  # 1-based
    (folder / "full_occlusion.txt").write_text("0,1,0,0,0,0")
    (folder / "out_of_view.txt").write_text("0,0,0,0,1,0")
    (folder / "nlp.txt").write_text("a white bird flying\n")
    (trajectory,) = load_source("seq", str(root)).trajectories
    assert trajectory.name == "bird-1"
    np.testing.assert_allclose(trajectory.boxes, boxes[:6])
    assert trajectory.visible.tolist() == [True, False, True, True, False, True]


def test_shared_benchmarks_and_coco_read_as_sources(shared_data):
    names = {t.name for t in load_source("seq", str(shared_data / "otb"), exclude={"Dog"}).trajectories}
    assert {"Bird2", "Jogging.1", "Jogging.2"} <= names and "Dog" not in names
    assert len(load_source("seq", str(shared_data / "vot")).trajectories) == 4
    uav = load_source("seq", str(shared_data / "uav123")).trajectories
    assert {t.name for t in uav} >= {"group2_2", "car16_1"}
    coco = load_source("coco", str(shared_data / "coco128"), 2.0)
    assert coco.weight == 2.0 and len(coco.trajectories) > 1000 and len(coco.trajectories[0]) == 1
    with pytest.raises(ValueError, match="expected KIND:ROOT"):
        parse_source_spec("lasot:/data")


# ---------------------------------------------------------------- samples and caches


def test_episode_has_an_anchor_and_context_patches(tiny_source):
    batch = EpisodeDataset([tiny_source], iterations=1, batch_size=2, num_reg=4)[0]
    assert batch["x"].shape == (2, 3, 127, 127) and batch["x"].dtype == torch.uint8
    assert batch["z"].shape == (8, 3, 255, 255) and batch["centers"].shape == (8, 2)
    assert batch["centers"].abs().max() <= 1.0  # shift jitter is at most 8 px = 1 cell
    pairs = PairDataset([tiny_source], iterations=1, batch_size=2)[0]
    assert pairs["x"].shape == (2, 3, 127, 127) and pairs["z"].shape == (2, 3, 255, 255)
    # Per-sample seeding: the same item twice is the same batch.
    assert torch.equal(EpisodeDataset([tiny_source], 1, 2, 4)[0]["z"], batch["z"])


def test_feature_cache_holds_the_frozen_networks_conv4_features(tiny_source, matching_weights, tmp_path):
    stage = MetaStage(matching_weights, CPU)
    (cached,) = prepare_feature_cache(tmp_path / "fc", [tiny_source], stage.matching, CPU, frames_per_trajectory=3,
                                      crops_per_frame=2, workers=0)
    trajectory = tiny_source.trajectories[0]
    assert cached_frames(trajectory, 3).tolist() == [0, 2, 5]  # evenly spaced visible frames
    exemplar, search = cached.arrays()
    assert exemplar.shape == (3, 256, 8, 8) and search.shape == (3, 2, 256, 24, 24) and search.dtype == np.float16
    # Row 1 (frame 2) is exactly what the network gives for that frame's crops.
    x, z, centers = _FrameCrops(tiny_source.trajectories, [(0, 2)], 2, seed=0)[0]
    with torch.no_grad():
        np.testing.assert_allclose(exemplar[1], stage.matching.conv4_features(x[None].float())[0].half(), rtol=1e-2, atol=1e-2)
        np.testing.assert_allclose(search[1], stage.matching.conv4_features(z.float()).half(), rtol=1e-2, atol=1e-2)
    np.testing.assert_array_equal(cached.centers[1], centers.numpy())
    batch = CachedEpisodeDataset([cached], iterations=1, batch_size=2, num_reg=16)[0]
    assert batch["x4"].shape == (2, 256, 8, 8) and batch["z4"].shape == (32, 256, 24, 24)
    assert batch["centers"].shape == (32, 2)
    # Present: reused, not rebuilt. Another network: another folder.
    folders = sorted((tmp_path / "fc").iterdir())
    prepare_feature_cache(tmp_path / "fc", [tiny_source], stage.matching, CPU, frames_per_trajectory=3, workers=0)
    assert sorted((tmp_path / "fc").iterdir()) == folders
    with pytest.raises(FileNotFoundError, match="feature cache"):
        prepare_feature_cache(tmp_path / "fc", [tiny_source], MatchingNetwork(), CPU, frames_per_trajectory=3, build=False)


def test_crop_cache_crops_match_crops_of_the_full_frame(tiny_source, tmp_path):
    (cropped,) = prepare_crop_cache(tmp_path / "cc", [tiny_source], workers=0)
    original, curated = tiny_source.trajectories[0], cropped.trajectories[0]
    assert len(curated) == len(original) and curated.visible.all()
    assert curated.frame(0).shape == (CROP_SIZE, CROP_SIZE, 3)
    still = CropSampler(scale_jitter=0.0, shift_jitter=0.0, flip=False)
    rng = lambda: np.random.default_rng(0)  # noqa: E731
    for size in (127, 255):
        direct, _, _ = still.crop(rng(), original.frame(3), original.boxes[3], size)
        via_cache, _, _ = still.crop(rng(), curated.frame(3), curated.boxes[3], size)
        assert np.abs(direct.astype(float) - via_cache).mean() < 6  # resampled twice + JPEG, same content


# ---------------------------------------------------------------- stages


def _fixed_batch_improves(stage, batch, lr, steps=20):
    optimizer = torch.optim.Adam(stage.trainable().parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        loss = stage.loss(stage.trainable(), batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def test_matching_stage_fits_a_fixed_batch(tiny_source):
    torch.manual_seed(0)
    stage = MatchingStage(192, CPU)
    stage.model.train()
    losses = _fixed_batch_improves(stage, PairDataset([tiny_source], 1, batch_size=2)[0], lr=1e-3)
    assert losses[-1] < 0.7 * losses[0], losses


def test_meta_stage_fits_a_fixed_batch(tiny_source, matching_weights, tmp_path):
    torch.manual_seed(0)
    stage = MetaStage(matching_weights, CPU, num_delta=4, num_reg=8)  # M' = 2M as the paper, smaller
    stage.model.train()
    cached = prepare_feature_cache(tmp_path / "fc", [tiny_source], stage.matching, CPU, frames_per_trajectory=3, workers=0)
    losses = _fixed_batch_improves(stage, CachedEpisodeDataset(cached, 1, batch_size=2, num_reg=8)[0], lr=1e-4)
    assert losses[-1] < 0.9 * losses[0], losses


def _train_cli(args):
    assert main(["train", *args, "--batch-size", "2", "--workers", "0", "--threads", "1"]) == 0


def _final_state(out):
    return torch.load(out / "checkpoint.pt", weights_only=False)


@pytest.mark.parametrize("stage", ["matching", "meta", "box"])
def test_resume_continues_exactly(stage, tiny_source, matching_weights, tmp_path):
    source = ["--source", f"seq:{tiny_source.root}"]
    extra = {"meta": ["--matching-weights", str(matching_weights), "--feature-cache", str(tmp_path / "fc"),
                      "--cache-frames", "3"], "box": ["--extractor", "lite"]}.get(stage, [])
    _train_cli([stage, *source, *extra, "--out", str(tmp_path / "whole"), "--iterations", "4"])
    _train_cli([stage, *source, *extra, "--out", str(tmp_path / "halves"), "--iterations", "2"])
    _train_cli([stage, *source, *extra, "--out", str(tmp_path / "halves"), "--iterations", "4", "--resume"])
    whole, halves = _final_state(tmp_path / "whole"), _final_state(tmp_path / "halves")
    assert whole["iteration"] == halves["iteration"] == 4 and whole["stage"] == stage
    assert set(whole) >= {"stage", "model", "optimizer", "iteration", "rng"}
    for key, value in whole["model"].items():
        assert torch.equal(value, halves["model"][key]), key
    # A resumed run takes the --lr it is given (a step decay).
    _train_cli([stage, *source, *extra, "--out", str(tmp_path / "halves"), "--iterations", "5", "--resume", "--lr", "1e-5"])
    assert [g["lr"] for g in _final_state(tmp_path / "halves")["optimizer"]["param_groups"]] == [1e-5]
    if stage == "box":  # the tracker's head file, fp16
        head = load_box_head(tmp_path / "whole" / "box.safetensors", "lite")
        for key, value in head.state_dict().items():
            assert torch.allclose(value.float(), whole["model"][key].float().half().float()), key
    if stage == "meta":  # the tracker's weight file: matching + meta-learner
        matching, meta = load_weights("mlt", tmp_path / "whole" / "mlt.safetensors")
        trained = whole["model"]["layers.0.weight"]  # stored as int8 rows: within half a step of max|row| / 127
        assert ((meta.layers[0].weight - trained).abs() <= trained.abs().amax(1, keepdim=True) / 254 + 1e-7).all()


def test_meta_cli_builds_the_feature_cache_once_and_exports_mlt_weights(tiny_source, matching_weights, tmp_path, capsys):
    args = ["meta", "--source", f"seq:{tiny_source.root}", "--matching-weights", str(matching_weights),
            "--feature-cache", str(tmp_path / "fc"), "--cache-frames", "3", "--amp"]
    _train_cli([*args, "--prepare-only", "--out", str(tmp_path / "run")])
    assert "caches ready" in capsys.readouterr().out and not (tmp_path / "run" / "checkpoint.pt").exists()
    (folder,) = (tmp_path / "fc").iterdir()
    built = folder.stat().st_mtime_ns
    _train_cli([*args, "--out", str(tmp_path / "run"), "--iterations", "2"])
    assert folder.stat().st_mtime_ns == built and len(list((tmp_path / "fc").iterdir())) == 1
    load_weights("mlt", tmp_path / "run" / "mlt.safetensors")
    assert main(["train", "matching", "--source", f"seq:{tiny_source.root}", "--feature-cache", "x",
                 "--out", str(tmp_path / "bad")]) == 2
    assert "needs --train-last-layer" in capsys.readouterr().err


def test_matching_cli_with_a_crop_cache(tiny_source, tmp_path):
    _train_cli(["mt", "--source", f"seq:{tiny_source.root}", "--crop-cache", str(tmp_path / "cc"),
                "--out", str(tmp_path / "run"), "--iterations", "1"])
    assert (tmp_path / "run" / "mlt_mt.safetensors").is_file()
    assert len(list((tmp_path / "cc").glob("*/0/*.jpg"))) == 6


# ---------------------------------------------------------------- distributed


def test_torchrun_two_cpu_processes(tiny_source, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "mlt_plugin.cli", "train", "matching", "--source", f"seq:{tiny_source.root}", "--out", str(out),
               "--iterations", "2", "--batch-size", "2", "--workers", "0", "--threads", "1"]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert _final_state(out)["iteration"] == 2
    assert (out / "matching.safetensors").is_file()


def _ddp_gradients(rank, world, port, matching_weights, batch, scale, result_file):
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    torch.manual_seed(0)
    stage = MetaStage(matching_weights, CPU)
    stage.model.load_state_dict(scale)
    stage.model.eval()  # no dropout: both runs see the same network
    module = torch.nn.parallel.DistributedDataParallel(stage.model)
    episodes = batch["x4"].shape[0] // world
    local = {"x4": batch["x4"][rank * episodes : (rank + 1) * episodes],
             "z4": batch["z4"][rank * episodes * 16 : (rank + 1) * episodes * 16],
             "centers": batch["centers"][rank * episodes * 16 : (rank + 1) * episodes * 16]}
    stage.loss(module, local).backward()
    if rank == 0:
        torch.save({k: p.grad for k, p in stage.model.named_parameters()}, result_file)
    dist.destroy_process_group()


def test_ddp_gradients_equal_single_process_gradients(tiny_source, matching_weights, tmp_path):
    """The meta stage (frozen matching network in eval mode, dropout off): DDP's averaged gradient over
    two processes of one episode each equals one process's gradient over both episodes. (The matching
    stage's BatchNorm uses per-process batch statistics under DDP, so it is not compared there.)"""
    import socket

    import torch.multiprocessing as mp

    torch.manual_seed(0)
    stage = MetaStage(matching_weights, CPU)
    cached = prepare_feature_cache(tmp_path / "fc", [tiny_source], stage.matching, CPU, frames_per_trajectory=3, workers=0)
    batch = CachedEpisodeDataset(cached, 1, batch_size=2)[0]
    stage.model.eval()
    stage.loss(stage.model, batch).backward()
    single = {k: p.grad.clone() for k, p in stage.model.named_parameters()}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = tmp_path / "ddp_grads.pt"
    mp.spawn(_ddp_gradients, args=(2, port, matching_weights, batch, stage.model.state_dict(), result), nprocs=2)
    distributed = torch.load(result)
    for key, grad in single.items():
        # atol relative to the gradient's scale: the normalised target channels give the last layer
        # gradients up to ~1, where fp32 summation order alone differs by ~1e-6 on near-zero entries.
        torch.testing.assert_close(distributed[key], grad, rtol=1e-4, atol=1e-5 * float(grad.abs().max()), msg=key)


def test_cached_episodes_never_use_the_anchor_frame(tiny_source, matching_weights, tmp_path):
    from mlt_plugin.training.feature_cache import CachedEpisodeDataset, prepare_feature_cache
    from mlt_plugin.training.trainer import MetaStage

    stage = MetaStage(matching_weights, torch.device("cpu"))
    cached = prepare_feature_cache(tmp_path / "fc", [tiny_source], stage.matching, torch.device("cpu"),
                                   frames_per_trajectory=4, crops_per_frame=1, workers=0)
    dataset = CachedEpisodeDataset(cached, 20, batch_size=2, num_reg=4)
    exemplar, search = cached[0].arrays()
    for iteration in range(20):
        batch = dataset[iteration]
        for e in range(2):
            anchor_row = next(r for r in range(len(exemplar)) if np.array_equal(exemplar[r], batch["x4"][e].numpy()))
            context = batch["z4"][e * 4 : (e + 1) * 4].numpy()
            assert not any(np.array_equal(search[anchor_row, 0], c) for c in context)


def test_meta_validation_logs_and_keeps_the_best_state(tiny_source, matching_weights, tmp_path):
    from mlt_plugin.training.trainer import train

    out = tmp_path / "run"
    train("meta", [tiny_source], out, 2, batch_size=2, workers=0, threads=1, matching_weights=matching_weights,
          feature_cache=tmp_path / "fc", cache_frames=3, val_sources=[tiny_source], val_every=2, val_batches=1)
    rows = (out / "val.csv").read_text().splitlines()
    assert rows[0] == "iteration,held_out,held_out_unadapted,all" and [r.split(",")[0] for r in rows[1:]] == ["0", "2"]
    best = torch.load(out / "best.pt", weights_only=False)
    held_out = [float(r.split(",")[1]) for r in rows[1:]]
    assert best["validation"]["held_out"] == pytest.approx(min(held_out), abs=1e-6)
    # The unadapted reference does not depend on the meta-learner.
    assert len({r.split(",")[2] for r in rows[1:]}) == 1
    assert (out / "mlt_best.safetensors").is_file()


@pytest.mark.parametrize("stage", ["matching", "meta"])
def test_warm_start_from_a_weight_file(stage, tiny_source, matching_weights, tmp_path):
    """--init loads the trained network from a weight file (the committed weights), not from a checkpoint."""
    from mlt_plugin.networks import MetaLearner

    torch.manual_seed(1)
    init = tmp_path / "init.safetensors"
    extra = []
    if stage == "meta":
        save_weights(init, MatchingNetwork(), MetaLearner())
        key, expected = "layers.3.weight", load_weights("mlt", init)[1].state_dict()["layers.3.weight"]
        extra = ["--matching-weights", str(matching_weights), "--feature-cache", str(tmp_path / "fc"), "--cache-frames", "3"]
    else:
        save_weights(init, MatchingNetwork())
        key, expected = "conv5.weight", load_matching(init, 192).state_dict()["conv5.weight"]
    # lr 0: Adam moves nothing, so the trained weights after one step are exactly the ones loaded.
    _train_cli([stage, "--source", f"seq:{tiny_source.root}", *extra, "--out", str(tmp_path / "run"),
                "--iterations", "1", "--lr", "0", "--init", str(init)])
    assert torch.equal(_final_state(tmp_path / "run")["model"][key], expected)


def test_mt_warm_start_from_mlts_matching_network(tiny_source, tmp_path):
    """`mlt train mt --init mlt.safetensors`: MLT-mt's 224 channels start from MLT's 192 (issue 11)."""
    torch.manual_seed(3)
    init = tmp_path / "mlt.safetensors"
    save_weights(init, MatchingNetwork())
    expected = load_matching(init).state_dict()["conv5.weight"]
    _train_cli(["mt", "--source", f"seq:{tiny_source.root}", "--out", str(tmp_path / "run"),
                "--iterations", "1", "--lr", "0", "--init", str(init)])
    model = _final_state(tmp_path / "run")["model"]
    assert model["conv5.weight"].shape[0] == 224
    assert torch.equal(model["conv5.weight"][:192], expected)
    assert torch.equal(model["bn5.bias"][192:], torch.zeros(32))


def test_mt_last_layer_trains_on_the_frozen_backbone(tiny_source, tmp_path, capsys):
    """`--train-last-layer`: MLT-mt's 224-channel last layer trains on MLT's backbone, which keeps its weights
    and batch-norm statistics; without a trained backbone to start from it is refused."""
    torch.manual_seed(4)
    init = tmp_path / "mlt.safetensors"
    save_weights(init, MatchingNetwork())
    start = load_matching(init).widened(224).state_dict()
    refused = main(["train", "mt", "--source", f"seq:{tiny_source.root}", "--out", str(tmp_path / "none"),
                    "--iterations", "1", "--train-last-layer"])
    assert refused != 0 and "--init" in capsys.readouterr().err
    _train_cli(["mt", "--source", f"seq:{tiny_source.root}", "--out", str(tmp_path / "run"), "--iterations", "2",
                "--lr", "1e-3", "--init", str(init), "--train-last-layer"])
    model = _final_state(tmp_path / "run")["model"]
    backbone = [k for k in start if k.startswith("backbone.")]
    assert any("running_mean" in k for k in backbone)
    assert all(torch.equal(model[k], start[k]) for k in backbone)
    assert not torch.equal(model["conv5.weight"], start["conv5.weight"])
    assert not torch.equal(model["bn5.weight"], start["bn5.weight"])


def test_train_blocks_fine_tune_the_extractors_last_blocks(tiny_source, tmp_path, capsys):
    """`--train-blocks 1` (issue 36): the lite extractor's last block trains at the backbone's learning-rate
    factor beside the head; earlier blocks and every batch-norm statistic keep their ImageNet values; the
    exported file holds the trained block; MLT's 192 channels warm-start from it (``narrowed``)."""
    from mlt_plugin.networks.extractors import LiteExtractor

    package = {f"backbone.{k}": v for k, v in LiteExtractor().state_dict().items()}
    run = tmp_path / "run"
    _train_cli(["mt", "--extractor", "lite", "--train-blocks", "1", "--backbone-lr-factor", "0.5", "--source",
                f"seq:{tiny_source.root}", "--out", str(run), "--iterations", "2", "--lr", "1e-3"])
    state = _final_state(run)
    model = state["model"]
    last = "backbone._blocks.10."
    assert not torch.equal(model[last + "_project_conv.weight"], package[last + "_project_conv.weight"])
    assert all(torch.equal(model[k], v) for k, v in package.items() if not k.startswith(last))
    assert all(torch.equal(model[k], v) for k, v in package.items() if "running_" in k)
    assert [g["lr"] for g in state["optimizer"]["param_groups"]] == [1e-3, 5e-4]
    exported = load_matching(run / "mlt_mt.safetensors")
    trained = model[last + "_project_conv.weight"].half().float()  # weight files are fp16
    assert torch.equal(exported.state_dict()[last + "_project_conv.weight"], trained)
    narrow = exported.narrowed(192)
    assert torch.equal(narrow.conv5.weight, exported.conv5.weight[:192])
    assert torch.equal(narrow.state_dict()[last + "_project_conv.weight"], trained)
    for bad, message in ((["--train-blocks", "12"], "1..11"), (["--train-blocks", "1", "--train-last-layer"], "not with")):
        code = main(["train", "mt", "--extractor", "lite", *bad, "--source", f"seq:{tiny_source.root}",
                     "--out", str(tmp_path / "bad"), "--iterations", "1"])
        assert code != 0 and message in capsys.readouterr().err
    code = main(["train", "mt", "--train-blocks", "1", "--source", f"seq:{tiny_source.root}", "--out", str(tmp_path / "p"),
                 "--iterations", "1"])
    assert code != 0 and "--extractor lite" in capsys.readouterr().err


# ---------------------------------------------------------------- hard pairs (issue 11)


@pytest.fixture
def still_source(tmp_path):
    """Two still images in YOLO layout: a red and a green square on blue (two objects of one image), and a
    yellow square on white (the other image)."""
    import cv2

    (tmp_path / "stills" / "images").mkdir(parents=True)
    (tmp_path / "stills" / "labels").mkdir()
    two = np.zeros((240, 320, 3), np.uint8)
    two[:] = (255, 0, 0)  # BGR blue
    two[40:80, 40:80] = (0, 0, 255)  # red, box (40, 40, 40, 40)
    two[70:110, 100:140] = (0, 255, 0)  # green, box (100, 70, 40, 40)
    other = np.full((240, 320, 3), 255, np.uint8)
    other[100:140, 140:180] = (0, 255, 255)
    for name, image, boxes in [("two", two, [(40, 40), (100, 70)]), ("other", other, [(140, 100)])]:
        cv2.imwrite(str(tmp_path / "stills" / "images" / f"{name}.png"), image)
        lines = [f"0 {(x + 20) / 320} {(y + 20) / 240} {40 / 320} {40 / 240}" for x, y in boxes]
        (tmp_path / "stills" / "labels" / f"{name}.txt").write_text("\n".join(lines) + "\n")
    return load_source("coco", str(tmp_path / "stills"))


def _exact(**options):
    """Pairs without random jitter or photometric change, so that positions can be checked."""
    sampler = CropSampler(scale_jitter=0.0, shift_jitter=0.0, flip=False)
    return dict(sampler=sampler, rotate=0.0, **options)


def test_negative_pairs_have_no_positive_label(tiny_source, still_source):
    from mlt_plugin.networks.losses import label_map

    batch = PairDataset([tiny_source, still_source], 1, batch_size=6, negative=1.0)[0]
    assert (label_map(batch["centers"], 2.0) < 0).all()


def test_distractor_pairs_label_the_target_where_it_lies(still_source):
    red = next(t for t in still_source.trajectories if t.name == "two#0")
    dataset = PairDataset([still_source], 1, **_exact(negative=0.0, distractor=1.0))
    rng = np.random.default_rng(0)
    z, center, size = dataset._distractor_crop(rng, red.frame(0), red.boxes[0], dataset.same_image[str(red.frames[0])])
    assert (z[127, 127] == [0, 255, 0]).all()  # centred on the green square (RGB)
    assert center.tolist() == pytest.approx([-30 * 127 / 80 / 8, -60 * 127 / 80 / 8])  # image px -> cells
    assert size.tolist() == pytest.approx([red.boxes[0][3] * 127 / 80, red.boxes[0][2] * 127 / 80])  # (h, w) in z
    cy, cx = 127 + center * 8
    assert (z[int(round(cy)), int(round(cx))] == [255, 0, 0]).all()  # RGB red at the labelled centre


def test_hard_still_pairs_paste_the_target_on_another_background(still_source):
    yellow = next(t for t in still_source.trajectories if t.name == "other#0")
    dataset = PairDataset([still_source], 1, **_exact(paste=1.0, occlude=0.0))
    for seed in range(4):
        z, center, _ = dataset._hard_still_crop(np.random.default_rng(seed), yellow.frame(0), yellow.boxes[0])
        assert (center == 0).all() and (z[127, 127] == [255, 255, 0]).all()  # the target, at the centre
        assert not (z[5, 5] == [255, 255, 255]).all()  # but not its own white background around it


def test_matching_trains_on_smaller_search_crops_and_validates(tiny_source, tmp_path):
    from mlt_plugin.training.trainer import train

    pairs = PairDataset([tiny_source], 1, batch_size=2, search_size=191)[0]
    assert pairs["z"].shape == (2, 3, 191, 191)
    with pytest.raises(ValueError, match="search size 127"):
        MatchingStage(192, CPU, search_size=127)
    out = tmp_path / "run"
    train("matching", [tiny_source], out, 2, batch_size=2, workers=0, threads=1, val_sources=[tiny_source],
          val_every=2, val_batches=1, search_size=191)
    rows = [r.split(",") for r in (out / "val.csv").read_text().splitlines()]
    assert rows[0] == ["iteration", "validation", "training", "gap"] and [r[0] for r in rows[1:]] == ["0", "2"]
    # The same sequence on both sides: the gap is zero (plain pairs at 255, drawn the same way).
    assert all(float(r[3]) == pytest.approx(0.0, abs=1e-6) for r in rows[1:])
    assert (out / "matching_best.safetensors").is_file() and (out / "matching.safetensors").is_file()
