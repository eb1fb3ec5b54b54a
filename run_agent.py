"""Roll the STEVE-1 agent out in MineRL for a text (or visual) prompt and save the gameplay as mp4.

    python run_agent.py --custom_text_prompt "chop a tree" --cond_scale 6.0 --gameplay_length 1000

The goal embedding comes from the prompt: text -> MineCLIP text embedding -> the prior -> a visual goal
embedding; or a visual prompt saved by `python -m mineclip_model.embed_cli` (--visual_prompt file.npy).
MineRL 1.x is an optional install (requirements-minerl.txt); without it this script says what to install.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

MINERL_INSTALL_HELP = """MineRL 1.x is not installed, and rolling the agent out needs it (training does not).
Install it (needs JDK 8 and internet access while it builds Minecraft):
  1. Install JDK 8 and make it the active java:  java -version  ->  1.8.x
     (Ubuntu: sudo apt-get install openjdk-8-jdk && sudo update-alternatives --config java)
  2. .venv/bin/pip install -r requirements-minerl.txt
  3. Headless machines also need a virtual display: sudo apt-get install xvfb, then run with  xvfb-run -a python run_agent.py ...
See README.md, section "Rolling the agent out in Minecraft (optional)"."""

# MineRL env settings of VPT / STEVE-1 (the agent was trained on these)
ENV_KWARGS = dict(
    fov_range=[70, 70], frameskip=1, gamma_range=[2, 2], guiscale_range=[1, 1],
    resolution=[640, 360], cursor_size_range=[16.0, 16.0],
)
VIDEO_FPS = 20


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--in_model", default="data/weights/vpt/2x.model", help="VPT .model file (architecture)")
    p.add_argument("--in_weights", default="data/weights/steve1/steve1.weights", help="STEVE-1 weights (yours: <out>_best.weights)")
    p.add_argument("--prior_weights", default="data/weights/steve1/steve1_prior.pt", help="the text -> visual goal prior")
    p.add_argument("--mineclip_weights", default="data/weights/mineclip/attn.pth", help="MineCLIP attn.pth (text embedding)")
    p.add_argument("--custom_text_prompt", default=None, help="what the agent should do, e.g. 'chop a tree'")
    p.add_argument("--visual_prompt", default=None, help="a .npy goal embedding (512,) saved by mineclip_model.embed_cli")
    p.add_argument("--cond_scale", type=float, default=6.0, help="classifier-free guidance scale (STEVE-1 used 6 for text, 7 for visual)")
    p.add_argument("--gameplay_length", type=int, default=1000, help="env steps per video (20 per second)")
    p.add_argument("--num_videos", type=int, default=1, help="episodes to roll out for the prompt")
    p.add_argument("--save_dirpath", default="data/generated_videos/custom_text_prompt", help="where the mp4s go")
    p.add_argument("--seed", type=int, default=None, help="world and sampling seed (None: random)")
    p.add_argument("--deterministic_prior", action="store_true", help="use z = 0 in the prior instead of sampling z")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    args = p.parse_args(argv)
    if (args.custom_text_prompt is None) == (args.visual_prompt is None):
        p.error("give exactly one of --custom_text_prompt and --visual_prompt")
    return args


def text_goal_embedding(prompt: str, mineclip_weights: str, prior_weights: str, device: str,
                        deterministic: bool = False, seed: int | None = None) -> np.ndarray:
    """Text prompt -> MineCLIP text embedding -> the prior's visual goal embedding (512,)."""
    from mineclip_model.embedding import embed_text
    from mineclip_model.mineclip import load_mineclip
    from prior_model.prior import load_prior

    mineclip = load_mineclip(mineclip_weights, device=device)
    text = torch.from_numpy(embed_text(mineclip, [prompt], device=device)).to(device)
    prior = load_prior(prior_weights, device=device)
    generator = torch.Generator(device=device).manual_seed(seed) if seed is not None else None
    with torch.no_grad():
        goal = prior.sample(text, deterministic=deterministic, generator=generator)
    return goal[0].float().cpu().numpy()


def make_env(seed: int | None):
    """MineRL's HumanSurvival env with the settings STEVE-1 was trained on (old gym API)."""
    try:
        from minerl.herobraine.env_specs.human_survival_specs import HumanSurvival
    except ImportError:
        print(MINERL_INSTALL_HELP, file=sys.stderr)
        raise SystemExit(2) from None
    env = HumanSurvival(**ENV_KWARGS).make()
    if seed is not None:
        env.seed(seed)
    return env


def video_name(prompt: str, index: int) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "_", prompt).strip("_")[:60] or "prompt"
    return f"{slug}_{index:02d}.mp4"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    env = make_env(args.seed)  # first, so a missing MineRL is reported before minutes of model loading
    from data.video_io import VideoWriter
    from MineRLConditionalAgent import MineRLConditionalAgent

    if args.visual_prompt:
        goal = np.load(args.visual_prompt, allow_pickle=False).reshape(-1).astype(np.float32)
        prompt = Path(args.visual_prompt).stem
    else:
        goal = text_goal_embedding(args.custom_text_prompt, args.mineclip_weights, args.prior_weights, device,
                                   args.deterministic_prior, args.seed)
        prompt = args.custom_text_prompt
    agent = MineRLConditionalAgent.from_files(args.in_model, args.in_weights, device=device, seed=args.seed)
    out_dir = Path(args.save_dirpath)
    out_dir.mkdir(parents=True, exist_ok=True)
    for index in range(args.num_videos):
        path = out_dir / video_name(prompt, index)
        obs = env.reset()
        agent.reset(cond_scale=args.cond_scale)
        with VideoWriter(path, fps=VIDEO_FPS) as video:
            for _ in tqdm(range(args.gameplay_length), desc=f"{prompt} #{index}", unit="step"):
                obs, _, done, _ = env.step(agent.get_action(obs, goal))
                video.write(np.asarray(obs["pov"]))
                if done:
                    break
        print(f"Saved {path}")
    env.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
