"""Training throughput of the STEVE-1 policy: frames/s and peak GPU memory of one training micro-step.

    python benchmarks/bench_train_throughput.py --preset 2x --batch_size 12 --trunc_t 64 --variants eager,compile

A micro-step is what the original STEVE-1 timed: forward + backward of one truncated-BPTT window
(batch x trunc_t frames, state carried and detached), gradient clipping and an AdamW step, under bf16
autocast, on random frames already on the GPU (data loading is measured by bench_loader.py).
Prints one JSON line per variant.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from embed_conditioned_policy import SteveAgentPolicy
from training.bc_loss import bc_window_loss
from training.optim import apply_freeze, make_optimizer
from vpt_model.config import preset
from vpt_model.policy import detach_state


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="2x", help="policy size: 2x (the released model), tiny, ...")
    p.add_argument("--batch_size", type=int, default=12, help="samples per micro-step")
    p.add_argument("--trunc_t", type=int, default=64, help="frames per sample per micro-step")
    p.add_argument("--variants", default="eager,compile", help="comma-separated: eager, compile")
    p.add_argument("--warmup", type=int, default=5, help="untimed micro-steps first (compilation happens here)")
    p.add_argument("--steps", type=int, default=20, help="timed micro-steps")
    p.add_argument("--device", default="cuda", help="cuda or cpu")
    return p.parse_args()


def random_window(batch: int, t: int, device: str, generator: torch.Generator) -> dict[str, torch.Tensor]:
    firsts = torch.zeros(batch, t, dtype=torch.bool, device=device)
    return {
        "img": torch.randint(0, 256, (batch, t, 128, 128, 3), dtype=torch.uint8, device=device, generator=generator),
        "mineclip_embed": torch.randn(batch, t, 512, device=device, generator=generator),
        "buttons": torch.randint(0, 8641, (batch, t), device=device, generator=generator),
        "camera": torch.randint(0, 121, (batch, t), device=device, generator=generator),
        "firsts": firsts,
    }


def measure(variant: str, args: argparse.Namespace) -> dict:
    torch.manual_seed(0)
    device = args.device
    policy = SteveAgentPolicy(preset(args.preset)).to(device)
    apply_freeze(policy, [])
    optimizer = make_optimizer(policy, 1e-5, 0.039428)
    model = torch.compile(policy) if variant == "compile" else policy
    trainable = [p for p in policy.parameters() if p.requires_grad]
    generator = torch.Generator(device=device).manual_seed(0)
    windows = [random_window(args.batch_size, args.trunc_t, device, generator) for _ in range(4)]
    state = policy.initial_state(args.batch_size, device)
    use_cuda = device.startswith("cuda")
    if use_cuda:
        torch.cuda.reset_peak_memory_stats()
    times = []
    compile_start = time.time()
    for step in range(args.warmup + args.steps):
        if use_cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast(device_type="cuda" if use_cuda else "cpu", dtype=torch.bfloat16):
            loss, state = bc_window_loss(model, windows[step % len(windows)], state)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 5.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        state = detach_state(state)
        if use_cuda:
            torch.cuda.synchronize()
        if step >= args.warmup:
            times.append(time.perf_counter() - start)
        elif step == args.warmup - 1:
            warmup_s = time.time() - compile_start
    frames = args.batch_size * args.trunc_t
    median = statistics.median(times)
    return {
        "benchmark": "train_micro_step", "variant": variant, "preset": args.preset, "batch_size": args.batch_size,
        "trunc_t": args.trunc_t, "median_step_s": round(median, 5), "frames_per_s": round(frames / median, 1),
        "min_step_s": round(min(times), 5), "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if use_cuda else None,
        "warmup_s": round(warmup_s, 1), "device": torch.cuda.get_device_name() if use_cuda else "cpu",
        "torch": torch.__version__, "loss": round(float(loss), 3),
    }


def main() -> None:
    args = parse_args()
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    for variant in args.variants.split(","):
        print(json.dumps(measure(variant, args)), flush=True)
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
