r"""Roll the STEVE-1 agent out in MineRL for text or visual prompts; each rollout is an mp4 plus a JSON record.

    .venv/bin/python run_agent.py --custom_text_prompt "chop a tree" --seed 0
    .venv/bin/python run_agent.py --visual_prompt prompts/tree.npy            # a saved goal embedding, or a short mp4 clip
    .venv/bin/python run_agent.py --prompts_file prompts.txt --num_videos 3 --seed 0
    .venv/bin/python run_agent.py --in_weights data/weights/steve1/steve1.weights data/weights/steve1/my_task_best.weights \
        --labels pre-trained fine-tuned --prompts_file prompts.txt --seed 0        # + side-by-side comparisons
    .venv/bin/python run_agent.py --custom_text_prompt "chop a tree" --replay_env some_gameplay.mp4   # dry run, no Minecraft

Goals: a text prompt -> MineCLIP text embedding -> the prior -> a visual goal embedding (guidance 6.0 by
default); a visual prompt is a .npy embedding or a video clip whose first 16 frames MineCLIP embeds (7.0).
Prompts files hold one 'text: ...' or 'visual: <file>' per line (rollout/prompts.py).

Seeds: video i of every prompt uses seed S + i (--seed S) for the world (env.seed before reset) and for the
agent's action sampling, and S for the prior; so the same command gives the same rollouts, and every
weights file meets the same worlds. Without --seed the seeds are drawn from OS entropy and recorded.

Outputs in --save_dirpath: <prompt>_<i>.mp4 (20 fps, h264, the 640x360 frames the agent saw) and <prompt>_<i>.json
(rollout/run_record.py). With several --in_weights: <label>/<prompt>_<i>.mp4 + .json per weights and
side_by_side/<prompt>_<i>.mp4 (rollout/side_by_side.py). A re-run skips rollouts whose record has the same
settings and refuses to overwrite one made with others.

MineRL 1.x is an optional install (README "Rolling the agent out"); --replay_env replays an episode
directory or video instead (rollout/replay_env.py): it checks prompts, weights, actions and outputs, but the
agent's actions change nothing it sees.
"""

from __future__ import annotations

import re
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from rollout import prompts as prompt_files
from rollout.minerl_env import ENV_DESCRIPTION, make_minerl_env, minerl_missing
from rollout.run_record import read_record, record_path, settings_differences, write_record
from toolkit_utils import cli
from toolkit_utils.file_hashes import file_fingerprint
from toolkit_utils.progress import progress_bar

PROGRAM = "run_agent.py"
SIDE_BY_SIDE_DIR = "side_by_side"
SEED_LIMIT = 2**31 - 1  # MineRL passes the world seed on as a Java int-sized value; keep it positive
WEIGHTS_FIX = "download it with bash download_weights.sh, or give the right path"


def build_parser() -> cli.ArgumentParser:
    p = cli.ArgumentParser(prog=PROGRAM, description=__doc__)
    a = p.add_argument
    a("--custom_text_prompt", default=None, help="what the agent should do, e.g. 'chop a tree'")
    a("--visual_prompt", default=None, help="a .npy goal embedding (512 values) or a video clip (its first 16 frames)")
    a("--prompts_file", default=None, help="several prompts, one per line: 'text: chop a tree' or 'visual: clip.mp4'")
    a("--in_model", default="data/weights/vpt/2x.model", help="VPT .model file (architecture) or a preset name")
    a("--in_weights", nargs="+", default=["data/weights/steve1/steve1.weights"],
      help="agent weights; several (e.g. steve1.weights and your <out>_best.weights) run on the same prompts and seeds")
    a("--labels", nargs="+", default=None, help="a name per --in_weights for folders and video labels (default: file names)")
    a("--prior_weights", default="data/weights/steve1/steve1_prior.pt", help="the text -> visual goal prior (text prompts)")
    a("--mineclip_weights", default="data/weights/mineclip/attn.pth", help="MineCLIP attn.pth (text and video prompts)")
    a("--cond_scale", type=cli.non_negative_float, default=None,
      help=f"classifier-free guidance scale (default: {prompt_files.TEXT_COND_SCALE} for text prompts, "
           f"{prompt_files.VISUAL_COND_SCALE} for visual prompts, as STEVE-1 used)")
    a("--gameplay_length", type=cli.positive_int, default=1000, help="env steps per video (20 per second)")
    a("--num_videos", type=cli.positive_int, default=1, help="videos per prompt (video i uses seed --seed + i)")
    a("--seed", type=cli.int_range(0, SEED_LIMIT), default=None,
      help="seeds the worlds, the agent's sampling and the prior (default: drawn from OS entropy and recorded)")
    a("--save_dirpath", default="data/generated_videos/custom_text_prompt", help="where the videos and records go")
    a("--overlay_prompt", action="store_true", help="write the prompt at the top left of every video frame")
    a("--deterministic_prior", action="store_true", help="use z = 0 in the prior instead of sampling z")
    a("--max_env_restarts", type=cli.non_negative_int, default=3,
      help="times a dead environment is replaced per video (the episode starts again); then the run stops")
    a("--replay_env", default=None,
      help="dry run without Minecraft: replay this episode directory or video instead of MineRL (rollout/replay_env.py)")
    a("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available)")
    return p


@dataclass
class Rollout:
    """One planned video: a prompt, a video index, a weights file."""

    prompt: prompt_files.Prompt
    index: int
    weights: int  # index into the agents
    video: Path
    settings: dict[str, Any]
    seed: int  # the world's and the agent's
    prior_seed: int


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_.")


def collect_prompts(parser: cli.ArgumentParser, args: Any) -> list[prompt_files.Prompt]:
    """The prompts of this run, each checked (SettingError with one line for the first bad one)."""
    given = [name for name in ("custom_text_prompt", "visual_prompt", "prompts_file") if getattr(args, name) is not None]
    if len(given) != 1:
        parser.refuse("prompt", " and ".join(f"--{n}" for n in given) or None,
                      "give exactly one of --custom_text_prompt, --visual_prompt and --prompts_file",
                      "e.g. --custom_text_prompt 'chop a tree'")
    if args.custom_text_prompt is not None:
        prompts = [prompt_files.text_prompt(args.custom_text_prompt, "--custom_text_prompt")]
    elif args.visual_prompt is not None:
        prompts = [prompt_files.visual_prompt(args.visual_prompt, "--visual_prompt")]
    else:
        prompts = prompt_files.read_prompts_file(args.prompts_file)
    prompt_files.check_distinct_names(prompts)
    for prompt in prompts:
        if prompt.is_video:
            prompt_files.check_clip_length(prompt)
        elif prompt.visual_path is not None:
            prompt_files.load_goal_file(prompt)
    return prompts


def weights_labels(parser: cli.ArgumentParser, args: Any) -> list[str]:
    """One folder-safe, distinct label per --in_weights."""
    labels = args.labels if args.labels is not None else [Path(w).stem for w in args.in_weights]
    if len(labels) != len(args.in_weights):
        parser.refuse("--labels", " ".join(labels), f"gives {len(labels)} labels for {len(args.in_weights)} --in_weights",
                      "give one label per weights file")
    slugs = [_slug(label) for label in labels]
    if any(not s for s in slugs) or len(set(slugs)) != len(slugs) or SIDE_BY_SIDE_DIR in slugs:
        parser.refuse("--labels", " ".join(labels), f"must be distinct, non-empty and not {SIDE_BY_SIDE_DIR!r}",
                      "give e.g. --labels pre-trained fine-tuned")
    return labels


def check_files(parser: cli.ArgumentParser, args: Any, prompts: list[prompt_files.Prompt]) -> None:
    """Every file the run reads exists (the weights only where a prompt needs them)."""
    from vpt_model.config import preset

    try:
        preset(str(args.in_model))
    except ValueError:
        cli.existing_file("--in_model", args.in_model, WEIGHTS_FIX)
    for weights in args.in_weights:
        cli.existing_file("--in_weights", weights, WEIGHTS_FIX)
    if any(p.text is not None for p in prompts):
        cli.existing_file("--prior_weights", args.prior_weights, WEIGHTS_FIX)
    if any(p.text is not None or p.is_video for p in prompts):
        cli.existing_file("--mineclip_weights", args.mineclip_weights, WEIGHTS_FIX)
    if Path(args.save_dirpath).exists() and not Path(args.save_dirpath).is_dir():
        parser.refuse("--save_dirpath", args.save_dirpath, "is a file, not a directory", "give a directory")
    if args.replay_env is not None and not Path(args.replay_env).exists():
        parser.refuse("--replay_env", args.replay_env, "not found", "give an episode directory or a video file")


def check_device(parser: cli.ArgumentParser, device: str | None) -> str:
    """The torch device to use; refuses unknown names and CUDA on a machine without it."""
    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not re.fullmatch(r"cpu|cuda(:\d+)?", device):
        parser.refuse("--device", device, "is not a device", "use cpu, cuda or cuda:N")
    if device.startswith("cuda") and not torch.cuda.is_available():
        parser.refuse("--device", device, "CUDA is not available here", "use --device cpu")
    return device


def _identity(path: str, cache: dict[str, dict]) -> dict:
    if path not in cache:
        cache[path] = file_fingerprint(path)
    return cache[path]


def plan_rollouts(args: Any, prompts: list[prompt_files.Prompt], labels: list[str], environment: str) -> list[Rollout]:
    """Every video of the run with the settings its record will hold (files hashed once each) and its seeds:
    video i of every prompt gets --seed + i (or a seed from OS entropy shared by all weights files)."""
    hashes: dict[str, dict] = {}
    in_model = {"preset": args.in_model} if not Path(args.in_model).is_file() else _identity(args.in_model, hashes)
    plan = []
    save_dir = Path(args.save_dirpath)
    for prompt in prompts:
        text_or_video = prompt.text is not None or prompt.is_video
        prior_seed = args.seed if args.seed is not None else secrets.randbelow(SEED_LIMIT)
        for index in range(args.num_videos):
            seed = args.seed + index if args.seed is not None else secrets.randbelow(SEED_LIMIT)
            for w, (weights, label) in enumerate(zip(args.in_weights, labels)):
                folder = save_dir if len(labels) == 1 else save_dir / _slug(label)
                settings = {
                    "prompt": prompt.text,
                    "visual_prompt": _identity(str(prompt.visual_path), hashes) if prompt.visual_path else None,
                    "cond_scale": args.cond_scale if args.cond_scale is not None else prompt.default_cond_scale,
                    "deterministic_prior": args.deterministic_prior if prompt.text is not None else None,
                    "weights": {
                        "label": label, "in_model": in_model, "in_weights": _identity(weights, hashes),
                        "prior_weights": _identity(args.prior_weights, hashes) if prompt.text is not None else None,
                        "mineclip_weights": _identity(args.mineclip_weights, hashes) if text_or_video else None,
                    },
                    "environment": environment,
                    "max_steps": args.gameplay_length,
                    "prompt_overlay": args.overlay_prompt,
                }
                plan.append(Rollout(prompt, index, w, folder / f"{prompt.name}_{index:02d}.mp4", settings, seed, prior_seed))
    return plan


def skip_finished(parser: cli.ArgumentParser, plan: list[Rollout], seed_given: bool) -> list[Rollout]:
    """The rollouts still to run; refuses when a record of another configuration is in the way."""
    todo = []
    for rollout in plan:
        try:
            existing = read_record(record_path(rollout.video))
        except ValueError as error:
            parser.refuse("--save_dirpath", rollout.video.parent, str(error), "move it away or choose another --save_dirpath")
        if existing is None or existing.get("ended") == "env_died":  # not done yet, or to be tried again
            todo.append(rollout)
            continue
        planned = {**rollout.settings, "seed": rollout.seed}
        differences = settings_differences(existing, planned, seed_given)
        if differences:
            parser.refuse("--save_dirpath", rollout.video.parent,
                          f"{record_path(rollout.video).name} was made with another {', '.join(differences)}",
                          "choose another --save_dirpath, or move the old videos away")
    return todo


def load_agents(parser: cli.ArgumentParser, args: Any, device: str) -> list:
    """One agent per --in_weights; a file that does not load is refused in one line."""
    from MineRLConditionalAgent import MineRLConditionalAgent

    agents = []
    for weights in args.in_weights:
        try:
            agents.append(MineRLConditionalAgent.from_files(args.in_model, weights, device=device))
        except (ValueError, KeyError, RuntimeError, OSError) as error:
            parser.refuse("--in_weights", weights, f"does not load with --in_model {args.in_model}: {error}",
                          "check that the weights match the .model file")
    return agents


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    prompts = collect_prompts(parser, args)
    labels = weights_labels(parser, args)
    if args.replay_env is None and (missing := minerl_missing()):
        raise cli.SettingError(missing)
    check_files(parser, args, prompts)
    device = check_device(parser, args.device)

    if args.replay_env is not None:
        from rollout.replay_env import ReplayEnv

        try:
            probe = ReplayEnv(args.replay_env)  # refuse an unreadable source before any model loads
        except (ValueError, OSError) as error:
            parser.refuse("--replay_env", args.replay_env, str(error), "give an episode directory or a video file")
        environment = probe.description()
        probe.close()
        make_env = lambda: ReplayEnv(args.replay_env)  # noqa: E731
    else:
        make_env, environment = make_minerl_env, ENV_DESCRIPTION
    print(f"{len(prompts)} prompt(s) x {args.num_videos} video(s) x {len(labels)} weights file(s); hashing the files...")
    plan = plan_rollouts(args, prompts, labels, environment)
    todo = skip_finished(parser, plan, args.seed is not None)
    print(f"{len(plan) - len(todo)} of {len(plan)} rollouts already done in {args.save_dirpath}")
    if todo:
        agents = load_agents(parser, args, device)
        goals = goal_embeddings(args, todo, device)
        if run_rollouts(args, todo, agents, goals, make_env, device):
            return 1
    if len(labels) > 1:
        write_comparisons(plan, labels, Path(args.save_dirpath) / SIDE_BY_SIDE_DIR)
    return 0


def goal_embeddings(args: Any, todo: list[Rollout], device: str) -> dict[prompt_files.Prompt, np.ndarray]:
    """The goal embedding of every prompt still to run (before any rollout, so a bad file stops nothing midway)."""
    embedder = prompt_files.GoalEmbedder(args.mineclip_weights, args.prior_weights, device, args.deterministic_prior)
    goals = {}
    for rollout in todo:
        prompt = rollout.prompt
        if prompt not in goals:
            try:
                goals[prompt] = embedder.goal(prompt, rollout.prior_seed)
            except (ValueError, KeyError, OSError, RuntimeError) as error:
                cli.refuse(prompt.source, prompt.describe(), f"gives no goal embedding ({error})",
                           "check --mineclip_weights and --prior_weights")
    return goals


def run_rollouts(args: Any, todo: list[Rollout], agents: list, goals: dict, make_env, device: str) -> bool:
    """Run the planned rollouts in order, writing each video and record; True when the environment died for good."""
    from rollout.episode import VIDEO_FPS, EnvHolder, run_episode

    holder = EnvHolder(make_env)
    try:
        for rollout in progress_bar(todo, desc="rollouts", unit="video"):
            prompt, seed = rollout.prompt, rollout.seed
            rollout.video.parent.mkdir(parents=True, exist_ok=True)
            result = run_episode(
                holder, agents[rollout.weights], goals[prompt], rollout.settings["cond_scale"], seed,
                args.gameplay_length, rollout.video, args.max_env_restarts,
                overlay_text=prompt.describe() if args.overlay_prompt else None,
                desc=f"{rollout.video.parent.name}/{rollout.video.name}")
            finished = result.ended != "env_died"
            write_record(record_path(rollout.video), {
                "video": rollout.video.name if finished else None,
                **rollout.settings,
                "prompt_source": prompt.source,
                "cond_scale_source": "--cond_scale" if args.cond_scale is not None else f"default for {prompt.kind} prompts",
                "seed": seed,
                "seed_source": f"--seed {args.seed} + video index {rollout.index}" if args.seed is not None
                else "OS entropy (no --seed)",
                "prior_seed": rollout.prior_seed if prompt.text is not None else None,
                "steps": result.steps, "ended": result.ended,
                "env_restarts": result.env_restarts, "env_failures": result.env_failures,
                "wall_time_s": result.wall_time_s,
                "programmatic_metrics": result.programmatic_metrics,
                "video_fps": VIDEO_FPS, "frame_size": list(result.frame_size) if result.frame_size else None,
                "frames": result.steps if finished else 0, "device": device,
            })
            tqdm.write(f"{rollout.video}: {result.steps} steps, ended: {result.ended}"
                       + (f", {result.env_restarts} environment restart(s)" if result.env_restarts else ""))
            if not finished:
                tqdm.write(f"{PROGRAM}: the environment died {args.max_env_restarts + 1} times on {rollout.video.name}; "
                           f"stopping (see {record_path(rollout.video)}). Re-run the command to continue.")
                return True
    finally:
        holder.close()
    return False


def write_comparisons(plan: list[Rollout], labels: list[str], out_dir: Path) -> None:
    """A side-by-side video per prompt and video index whose rollouts all finished (kept if already there)."""
    from rollout.side_by_side import render_side_by_side

    groups: dict[tuple, list[Rollout]] = {}
    for rollout in plan:
        groups.setdefault((rollout.prompt, rollout.index), []).append(rollout)
    for group in groups.values():
        output = out_dir / group[0].video.name
        if output.exists() or not all(r.video.exists() for r in group):
            continue
        render_side_by_side([r.video for r in group], [labels[r.weights] for r in group], output, progress=False)
        print(f"Side by side: {output}")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; a refused setting ends the program with one line and exit status 2."""
    return cli.run_main(PROGRAM, lambda: _main(argv))


if __name__ == "__main__":
    sys.exit(main())
