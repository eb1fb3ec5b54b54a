"""Latency of one agent step with classifier-free guidance: 640x360 observation in, MineRL action out.

    python benchmarks/bench_agent_step.py --preset 2x --device cuda --steps 200

The original STEVE-1 took 10.9 ms per step on an H100 (policy only, batch 2). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch

from MineRLConditionalAgent import MineRLConditionalAgent
from embed_conditioned_policy import SteveAgentPolicy
from vpt_model.config import preset


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="2x", help="policy size")
    p.add_argument("--device", default="cuda", help="cuda or cpu")
    p.add_argument("--steps", type=int, default=200, help="timed steps (after 20 untimed)")
    p.add_argument("--cond_scale", type=float, default=6.0, help="guidance scale (batch 2 when set)")
    args = p.parse_args()
    torch.manual_seed(0)
    agent = MineRLConditionalAgent(SteveAgentPolicy(preset(args.preset)), device=args.device, seed=0)
    agent.reset(cond_scale=args.cond_scale)
    rng = np.random.default_rng(0)
    obs = {"pov": rng.integers(0, 256, (360, 640, 3), dtype=np.uint8)}
    goal = rng.normal(size=512).astype(np.float32)
    times = []
    for step in range(20 + args.steps):
        start = time.perf_counter()
        agent.get_action(obs, goal)  # ends with a host copy of the sampled indices: includes the GPU work
        if step >= 20:
            times.append(time.perf_counter() - start)
    print(json.dumps({"benchmark": "agent_step", "preset": args.preset, "cond_scale": args.cond_scale,
                      "median_ms": round(1000 * statistics.median(times), 3), "p90_ms": round(1000 * sorted(times)[int(0.9 * len(times))], 3),
                      "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu", "torch": torch.__version__}))


if __name__ == "__main__":
    main()
