"""Latency of one agent step with classifier-free guidance: 640x360 observation in, MineRL action out.

    .venv/bin/python benchmarks/bench_agent_step.py --preset 2x --device cuda --steps 200

Runs the agent with plain eager calls and with the step replayed from a CUDA graph (the default on a GPU,
vpt_model/fast_acting.py) on the same observations, and prints one JSON line per way: median and p90 ms
per step (resize, policy, guidance, sampling and the host copy of the action included), and for the
graph the largest difference of its guided log-probs from the eager ones over the whole run.
--profile writes the GPU kernel times of 20 graph steps.
The original STEVE-1 took 10.2 ms per step on an H200 (SPEC.md section 9; batch 2).
"""

from __future__ import annotations

import json
import os
import sys
import statistics
import time

import numpy as np
import torch

from MineRLConditionalAgent import MineRLConditionalAgent
from embed_conditioned_policy import SteveAgentPolicy
from vpt_model.action_head import sample_actions
from vpt_model.action_space import joint_to_env_action
from vpt_model.config import preset
from toolkit_utils import cli

WARMUP = 20


def run(agent: MineRLConditionalAgent, observations: list[dict], goal: np.ndarray, cond_scale: float):
    """Time get_action's work step by step; return the times and the guided log-probs of every step."""
    agent.reset(cond_scale=cond_scale)
    times, log_probs = [], []
    for obs in observations:
        start = time.perf_counter()
        pd = agent.action_distribution(obs, goal)
        action = sample_actions(pd, generator=agent.generator)
        joint_to_env_action(int(action["buttons"][0]), int(action["camera"][0]))  # the host copy waits for the GPU
        times.append(time.perf_counter() - start)
        log_probs.append(torch.cat([pd["buttons"], pd["camera"]], -1))
    return times[WARMUP:], torch.stack(log_probs)


def main() -> None:
    p = cli.ArgumentParser(description=__doc__)
    p.add_argument("--preset", default="2x", help="policy size")
    p.add_argument("--device", default="cuda", help="cuda or cpu")
    p.add_argument("--steps", type=int, default=200, help="timed steps (after 20 untimed)")
    p.add_argument("--cond_scale", type=float, default=6.0, help="guidance scale (batch 2 when set)")
    p.add_argument("--profile", default=None, help="write the kernel times of 20 graph steps here")
    args = p.parse_args()
    torch.manual_seed(0)
    policy = SteveAgentPolicy(preset(args.preset))
    rng = np.random.default_rng(0)
    observations = [{"pov": rng.integers(0, 256, (360, 640, 3), dtype=np.uint8)} for _ in range(WARMUP + args.steps)]
    goal = rng.normal(size=512).astype(np.float32)
    on_cuda = args.device.startswith("cuda")
    results = {}
    for name, graph in (("eager", False), ("cuda_graph", True)) if on_cuda else (("eager", False),):
        start = time.perf_counter()
        agent = MineRLConditionalAgent(policy, device=args.device, seed=0, cuda_graph=graph)
        agent.reset(cond_scale=args.cond_scale)  # captures the graph of batch 2 here
        setup_s = time.perf_counter() - start
        times, log_probs = run(agent, observations, goal, args.cond_scale)
        results[name] = log_probs
        line = {"benchmark": "agent_step", "way": name, "preset": args.preset, "cond_scale": args.cond_scale,
                "median_ms": round(1000 * statistics.median(times), 3), "p90_ms": round(1000 * sorted(times)[int(0.9 * len(times))], 3),
                "setup_s": round(setup_s, 2), "device": torch.cuda.get_device_name() if on_cuda else "cpu", "torch": torch.__version__}
        if name != "eager":
            line["max_abs_logprob_diff_vs_eager"] = float((log_probs - results["eager"]).abs().max())
        print(json.dumps(line), flush=True)
        if name == "cuda_graph" and args.profile:
            sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
            from bench_train_throughput import write_profile  # same directory

            write_profile(lambda: run(agent, observations[:10], goal, args.cond_scale), args.profile, True, steps=2)


if __name__ == "__main__":
    main()
