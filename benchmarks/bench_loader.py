"""Training-loader throughput per worker (CPU): our episode format through MinecraftDataset versus the
original STEVE-1 layout read the original way.

Both read T-frame samples from the same 128x128 frames (generated block world, see
bench_video_io.py) of several 6,000-frame episodes, in one process pinned to --cores cores:
  ours         MinecraftDataset[(epoch, index)] as a DataLoader worker calls it: episodes stay
               open in its cache (actions in memory, embeddings memory-mapped, one decoder each)
  ours_cold    the same with a fresh dataset per sample (every file reopened, like the original)
  original     per sample: unpickle the whole episode's embeds_attn.pkl and actions.pkl, walk the
               whole episode for hindsight goals, seek the mp4v with cv2.VideoCapture
               (CAP_PROP_POS_FRAMES) and read T frames, convert each env action dict to joint
               indices frame by frame (vpt_model.action_space)
The episodes are written once to --data_dir and reused while their settings match.

  .venv/bin/python benchmarks/bench_loader.py                       # ~2 minutes the first time, ~1 after
  .venv/bin/python benchmarks/bench_loader.py --cores 2 --samples 20
Reference (the original STEVE-1 code): the original loader gave ~3,400 frames/s per worker on one core of
a 2-core machine for 6,000-frame episodes (generated frames).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from bench_video_io import generated_frames  # same directory: the frames bench_video_io times
from data.episode import EMBED_DIM, EMBED_START, FRAME_SIZE, EpisodeWriter
from data.minecraft_dataset import MinecraftDataset
from vpt_model.action_space import ENV_BUTTONS, env_action_to_joint
from toolkit_utils import cli

FPS = 20
DONE_FILE = "settings.json"  # written last: its presence and content say the episodes are complete


def parse_args() -> argparse.Namespace:
    """Command-line settings."""
    parser = cli.ArgumentParser(description=__doc__)
    parser.add_argument("--num_episodes", type=int, default=4, help="episodes per format")
    parser.add_argument("--num_frames", type=int, default=6000, help="frames per episode")
    parser.add_argument("--T", type=int, default=640, help="frames per sample (the training recipe's T)")
    parser.add_argument("--samples", type=int, default=12, help="timed samples per loader; medians reported")
    parser.add_argument("--cores", type=int, default=1, help="CPU cores the process may use (one worker's share)")
    parser.add_argument("--p_uncond", type=float, default=0.1, help="as in training")
    parser.add_argument("--data_dir", default=os.path.join(tempfile.gettempdir(), "steve1_bench_loader"),
                        help="where the generated episodes are kept between runs")
    parser.add_argument("--seed", type=int, default=0, help="seed for frames, actions, embeddings and sample choice")
    parser.add_argument("--json_out", default=None, help="append the JSON result line to this file")
    return parser.parse_args()


# ---------------------------------------------------------------------------------------------
# Episodes


def episode_content(num_frames: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Frames, env buttons [N,23], camera degrees [N,2] and embeddings [N,512] of one episode."""
    rng = np.random.default_rng(seed)
    frames = generated_frames(num_frames, seed)
    buttons = (rng.random((num_frames, len(ENV_BUTTONS))) < 0.1).astype(np.uint8)
    camera = np.where(rng.random((num_frames, 1)) < 0.5, rng.normal(0, 3, (num_frames, 2)), 0).astype(np.float32)
    embeds = rng.normal(size=(num_frames, EMBED_DIM)).astype(np.float32)
    embeds[:EMBED_START] = np.nan
    return frames, buttons, camera, embeds


def write_original(path: Path, frames: np.ndarray, buttons: np.ndarray, camera: np.ndarray, embeds: np.ndarray) -> None:
    """The original STEVE-1 layout: frames.mp4 (mp4v), actions.pkl, embeds_attn.pkl, metadata.json, len.txt."""
    path.mkdir(parents=True)
    video = cv2.VideoWriter(str(path / "frames.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (FRAME_SIZE, FRAME_SIZE))
    for frame in frames:
        video.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    video.release()
    actions = []
    for i in range(len(frames)):
        action = {name: int(buttons[i, j]) for j, name in enumerate(ENV_BUTTONS)}
        action["camera"] = camera[i].astype(np.float64)
        actions.append(action)
    with open(path / "actions.pkl", "wb") as file:
        pickle.dump(actions, file)
    with open(path / "embeds_attn.pkl", "wb") as file:
        pickle.dump([None] * EMBED_START + [embeds[i][None] for i in range(EMBED_START, len(frames))], file)
    (path / "metadata.json").write_text("{}")
    (path / "len.txt").write_text(str(len(frames)))


def prepare(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """Episode directories of both formats, generated unless a complete set with these settings exists."""
    root = Path(args.data_dir)
    settings = {"num_episodes": args.num_episodes, "num_frames": args.num_frames, "seed": args.seed, "version": 1}
    ours = [str(root / "ours" / f"episode_{i:03d}") for i in range(args.num_episodes)]
    original = [str(root / "original" / f"episode_{i:03d}") for i in range(args.num_episodes)]
    done = root / DONE_FILE
    if done.is_file() and json.loads(done.read_text()) == settings:
        print(f"reusing the episodes in {root}")
        return ours, original
    shutil.rmtree(root, ignore_errors=True)
    begin = time.perf_counter()
    for i in range(args.num_episodes):
        frames, buttons, camera, embeds = episode_content(args.num_frames, args.seed * 1000 + i)
        with EpisodeWriter(ours[i]) as writer:
            for frame in frames:
                writer.append_frame(frame)
            writer.append_actions(buttons, camera)
            writer.set_embeds(embeds)
        write_original(Path(original[i]), frames, buttons, camera, embeds)
    done.write_text(json.dumps(settings))
    print(f"wrote {args.num_episodes} x {args.num_frames} frames in each format to {root} "
          f"in {time.perf_counter() - begin:.0f} s")
    return ours, original


# ---------------------------------------------------------------------------------------------
# The original loader


def original_sample(episode_dir: str, start: int, T: int, min_btwn_goals: int, max_btwn_goals: int,
                    p_uncond: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One T-frame sample read the way the original STEVE-1 get_episode_chunk did."""
    path = Path(episode_dir)
    with open(path / "embeds_attn.pkl", "rb") as file:
        embeds = pickle.load(file)  # the whole episode, every sample
    total = int((path / "len.txt").read_text())
    capture = cv2.VideoCapture(str(path / "frames.mp4"))
    capture.set(cv2.CAP_PROP_POS_FRAMES, start)
    frames = []
    for _ in range(T):
        ok, frame = capture.read()
        if not ok:
            raise RuntimeError(f"{path}: could not read frame {start + len(frames)}")
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    capture.release()

    goals, current = [], 0  # hindsight goals over the whole episode, as the original walked them
    while current < total - 1:
        current += int(rng.integers(min_btwn_goals, max_btwn_goals))
        if total - current < min_btwn_goals:
            current = total - 1
        goals.append(current)
    per_frame, goal = [], 0
    for t in range(total):
        per_frame.append(embeds[goals[goal]])
        if t == goals[goal] + 1:
            goal += 1
    if rng.random() < p_uncond:
        per_frame = [np.zeros_like(embed) for embed in per_frame]

    with open(path / "actions.pkl", "rb") as file:
        actions = pickle.load(file)
    img, goal_embeds, buttons, camera = [], [], [], []
    for i, t in enumerate(range(start, start + T)):
        # The original resized every frame to the agent resolution (a no-op size here, still paid).
        img.append(cv2.resize(frames[i], (FRAME_SIZE, FRAME_SIZE), interpolation=cv2.INTER_LINEAR))
        goal_embeds.append(per_frame[t].reshape(1, -1))
        joint_button, joint_camera = env_action_to_joint(actions[t])  # per frame, as the original did
        buttons.append(joint_button)
        camera.append(joint_camera)
    firsts = np.zeros(T, dtype=bool)
    firsts[0] = True
    return {"img": np.stack(img), "mineclip_embed": np.concatenate(goal_embeds), "buttons": np.array(buttons),
            "camera": np.array(camera), "firsts": firsts}


# ---------------------------------------------------------------------------------------------
# Timing


def time_samples(read, keys: list[tuple[int, int]], T: int) -> float:
    """Median frames/s over one read per key."""
    rates = []
    for key in keys:
        begin = time.perf_counter()
        sample = read(key)
        rates.append(T / (time.perf_counter() - begin))
        assert sample["img"].shape == (T, FRAME_SIZE, FRAME_SIZE, 3) and sample["img"].dtype == np.uint8
        assert sample["mineclip_embed"].shape == (T, EMBED_DIM) and len(sample["buttons"]) == T
    return statistics.median(rates)


def main() -> None:
    """Generate (or reuse) the episodes, time both loaders, print the medians and a JSON line."""
    args = parse_args()
    allowed = sorted(os.sched_getaffinity(0))
    cores = allowed[: args.cores]
    os.sched_setaffinity(0, cores)  # one worker's share of the machine (threads included)
    ours_dirs, original_dirs = prepare(args)

    dataset = MinecraftDataset(ours_dirs, T=args.T, p_uncond=args.p_uncond, seed=args.seed)
    rng = np.random.default_rng(args.seed)
    keys = [(0, int(i)) for i in rng.choice(len(dataset), size=min(args.samples, len(dataset)), replace=False)]
    dataset[keys[0]]  # warm-up: imports, first decoder

    results = {
        "num_episodes": args.num_episodes, "num_frames": args.num_frames, "T": args.T, "samples": len(keys),
        "cores": len(cores), "cpu": platform_cpu(),
    }
    results["ours_fps"] = round(time_samples(lambda key: dataset[key], keys, args.T))
    results["ours_cold_fps"] = round(time_samples(
        lambda key: MinecraftDataset(ours_dirs, T=args.T, p_uncond=args.p_uncond, seed=args.seed)[key], keys, args.T,
    ))

    def original(key: tuple[int, int]) -> dict[str, np.ndarray]:
        episode_index, start = dataset.samples[key[1]]  # the same windows as ours
        return original_sample(original_dirs[episode_index], start, args.T, 15, 200, args.p_uncond,
                               np.random.default_rng([args.seed, *key]))

    # Check before timing: both loaders must give the same window (frames up to codec error, same actions).
    ours_sample, original_first = dataset[keys[0]], original(keys[0])
    results["window_mae_ours_vs_original"] = round(float(np.abs(
        ours_sample["img"].astype(np.int16) - original_first["img"]).mean()), 2)
    results["same_actions"] = bool(np.array_equal(ours_sample["buttons"], original_first["buttons"])
                                   and np.array_equal(ours_sample["camera"], original_first["camera"]))
    results["original_fps"] = round(time_samples(original, keys, args.T))
    results["speedup"] = round(results["ours_fps"] / results["original_fps"], 2)
    results["ours_kib_per_frame"] = round(dir_bytes(ours_dirs) / 1024 / (args.num_episodes * args.num_frames), 2)
    results["original_kib_per_frame"] = round(dir_bytes(original_dirs) / 1024 / (args.num_episodes * args.num_frames), 2)

    print(f"{len(keys)} samples of T={args.T} from {args.num_episodes} x {args.num_frames}-frame 128x128 episodes, "
          f"{len(cores)} core(s), medians:")
    print(f"  ours, MinecraftDataset (episodes cached as in a worker): {results['ours_fps']:>7} frames/s")
    print(f"  ours, fresh dataset per sample (all files reopened):   {results['ours_cold_fps']:>7} frames/s")
    print(f"  original layout, original loader:                      {results['original_fps']:>7} frames/s")
    print(f"  same window: frames differ by {results['window_mae_ours_vs_original']} per value (codecs), "
          f"actions identical: {results['same_actions']}")
    print(f"  on disk: ours {results['ours_kib_per_frame']} KiB/frame, original {results['original_kib_per_frame']} KiB/frame")
    line = json.dumps(results)
    print(line)
    if args.json_out:
        with open(args.json_out, "a") as file:
            file.write(line + "\n")


def dir_bytes(dirs: list[str]) -> int:
    """Total size of the files in the given directories."""
    return sum(f.stat().st_size for d in dirs for f in Path(d).iterdir() if f.is_file())


def platform_cpu() -> str:
    """The CPU model, for comparing runs."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


if __name__ == "__main__":
    main()
