"""Training throughput of the STEVE-1 policy: frames/s and peak GPU memory of one training micro-step.

    .venv/bin/python benchmarks/bench_train_throughput.py --preset 2x --batch_size 12 --trunc_t 64 --variants regional,eager
    .venv/bin/python benchmarks/bench_train_throughput.py --variants regional --check --profile $OUT/profile.txt

A micro-step is what the original STEVE-1 timed: forward + backward of one truncated-BPTT window
(batch x trunc_t frames, state carried and detached), gradient clipping and an AdamW step, under bf16
autocast, on random frames already on the GPU (data loading is measured by bench_loader.py).
Variants:
  eager            the plain modules
  compile          torch.compile of the whole policy (this project's default before regional compilation)
  regional         training/performance.py: each CNN stack and transformer block compiled (the default now)
  regional_lowmem  regional + the memory mode (the first CNN stack recomputed in backward, in groups)
  eager_lowmem     the memory mode without compilation
Prints one JSON line per variant: frames/s, % of the bf16 peak (45.3 GFLOP per trained frame, SPEC.md
section 3, over --peak_tflops), peak GiB, the seconds until the first step ended (compilation included).
--check also prints, for each compiled variant, the largest difference of the heads' log-probs and of one
window's gradients between its bf16 path and the plain fp32 path on the same weights and inputs (plain
eager bf16 beside it, and the tensors whose error stands out against eager bf16's).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from collections import defaultdict

import torch

from embed_conditioned_policy import SteveAgentPolicy
from training.bc_loss import bc_window_loss
from training.optim import apply_freeze, make_optimizer
from training.performance import speed_up_training
from vpt_model.action_head import action_log_prob
from vpt_model.config import preset
from vpt_model.policy import detach_state
from toolkit_utils import cli

TRAIN_GFLOP_PER_FRAME = 45.3  # SPEC.md section 3: 3 x 15.1 GFLOP forward (2x policy)
VARIANTS = ("eager", "compile", "regional", "regional_lowmem", "eager_lowmem")


def parse_args() -> argparse.Namespace:
    p = cli.ArgumentParser(description=__doc__)
    p.add_argument("--preset", default="2x", help="policy size: 2x (the released model), tiny, ...")
    p.add_argument("--batch_size", type=int, default=12, help="samples per micro-step")
    p.add_argument("--trunc_t", type=int, default=64, help="frames per sample per micro-step")
    p.add_argument("--variants", default="regional,eager", help=f"comma-separated: {', '.join(VARIANTS)}")
    p.add_argument("--warmup", type=int, default=5, help="untimed micro-steps first (compilation happens here)")
    p.add_argument("--steps", type=int, default=20, help="timed micro-steps")
    p.add_argument("--chunks", type=int, default=4, help="frame groups of the memory mode's recomputation")
    p.add_argument("--peak_tflops", type=float, default=790.0, help="bf16 matrix peak for the %% column (H200/H100: ~790 measured)")
    p.add_argument("--check", action="store_true", help="compare each compiled variant's bf16 path with the plain fp32 path")
    p.add_argument("--profile", default=None, help="write a per-kernel time table of two steps of the first variant here")
    p.add_argument("--device", default="cuda", help="cuda or cpu")
    return p.parse_args()


def random_window(batch: int, t: int, device: str, generator: torch.Generator) -> dict[str, torch.Tensor]:
    return {
        "img": torch.randint(0, 256, (batch, t, 128, 128, 3), dtype=torch.uint8, device=device, generator=generator),
        "mineclip_embed": torch.randn(batch, t, 512, device=device, generator=generator),
        "buttons": torch.randint(0, 8641, (batch, t), device=device, generator=generator),
        "camera": torch.randint(0, 121, (batch, t), device=device, generator=generator),
        "firsts": torch.zeros(batch, t, dtype=torch.bool, device=device),
    }


def speed_up(policy: SteveAgentPolicy, variant: str, args: argparse.Namespace) -> None:
    speed_up_training(policy, compile_regions=variant.startswith("regional"), low_memory=variant.endswith("lowmem"),
                      chunks=args.chunks)


def build(variant: str, args: argparse.Namespace) -> tuple[SteveAgentPolicy, torch.nn.Module]:
    """The policy (seed 0) and the callable a step runs for `variant`."""
    torch.manual_seed(0)
    policy = SteveAgentPolicy(preset(args.preset)).to(args.device)
    apply_freeze(policy, [])
    if variant == "compile":
        return policy, torch.compile(policy)
    speed_up(policy, variant, args)
    return policy, policy


def autocast(device: str):
    return torch.autocast(device_type="cuda" if device.startswith("cuda") else "cpu", dtype=torch.bfloat16)


def measure(variant: str, args: argparse.Namespace, profile_path: str | None) -> dict:
    device = args.device
    use_cuda = device.startswith("cuda")
    start = time.perf_counter()
    policy, model = build(variant, args)
    optimizer = make_optimizer(policy, 1e-5, 0.039428)
    trainable = [p for p in policy.parameters() if p.requires_grad]
    generator = torch.Generator(device=device).manual_seed(0)
    windows = [random_window(args.batch_size, args.trunc_t, device, generator) for _ in range(4)]
    state = policy.initial_state(args.batch_size, device)
    if use_cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times, first_step_s, saved_gib = [], None, None

    def step(i: int) -> torch.Tensor:
        nonlocal state, saved_gib
        before = torch.cuda.memory_allocated() if use_cuda else 0
        with autocast(device):
            loss, state = bc_window_loss(model, windows[i % len(windows)], state)
        if use_cuda and saved_gib is None:
            saved_gib = (torch.cuda.memory_allocated() - before) / 2**30  # kept for backward (+ the outputs)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 5.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        state = detach_state(state)
        return loss

    for i in range(args.warmup + args.steps):
        if use_cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        loss = step(i)
        if use_cuda:
            torch.cuda.synchronize()
        if i == 0:
            first_step_s = time.perf_counter() - start
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
    if profile_path:
        write_profile(lambda: step(0), profile_path, use_cuda)
    frames = args.batch_size * args.trunc_t
    fps = frames / statistics.median(times)
    return {
        "benchmark": "train_micro_step", "variant": variant, "preset": args.preset, "batch_size": args.batch_size,
        "trunc_t": args.trunc_t, "frames_per_s": round(fps, 1),
        "pct_of_peak": round(100 * fps * TRAIN_GFLOP_PER_FRAME * 1e9 / (args.peak_tflops * 1e12), 1),
        "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if use_cuda else None,
        "kept_for_backward_gib": round(saved_gib, 2) if saved_gib is not None else None,
        "median_step_s": round(statistics.median(times), 5), "min_step_s": round(min(times), 5),
        "first_step_s": round(first_step_s, 1), "loss": round(loss.item(), 3),
        "device": torch.cuda.get_device_name() if use_cuda else "cpu", "torch": torch.__version__,
    }


def write_profile(run_step, path: str, use_cuda: bool, steps: int = 2) -> None:
    """Profiled calls of run_step: kernel time by category, the costliest kernels and the aten ops behind them."""
    activities = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if use_cuda else [])
    with torch.profiler.profile(activities=activities, record_shapes=True) as prof:
        for _ in range(steps):
            run_step()
        if use_cuda:
            torch.cuda.synchronize()
    kernels: dict[str, float] = defaultdict(float)
    for event in prof.events():
        if event.device_type == torch.autograd.DeviceType.CUDA:
            kernels[event.name] += event.device_time / steps / 1000  # ms per call
    categories: dict[str, float] = defaultdict(float)
    for name, ms in kernels.items():
        categories[kernel_category(name)] += ms
    total = sum(kernels.values())
    lines = [f"GPU kernel time per step: {total:.2f} ms", "", "by category (ms per step, share):"]
    lines += [f"  {c:28s} {ms:9.2f}  {100 * ms / total:5.1f}%" for c, ms in sorted(categories.items(), key=lambda kv: -kv[1])]
    lines += ["", "costliest kernels (ms per step):"]
    lines += [f"  {ms:9.3f}  {name[:150]}" for name, ms in sorted(kernels.items(), key=lambda kv: -kv[1])[:40]]
    lines += ["", "aten ops by GPU time (ms per call, input shapes):"]
    ops = [e for e in prof.key_averages(group_by_input_shape=True) if e.key.startswith("aten::")]
    for e in sorted(ops, key=lambda e: -e.self_device_time_total)[:25]:
        lines.append(f"  {e.self_device_time_total / steps / 1000:9.3f}  {e.key} {str(e.input_shapes)[:120]}")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines[:16]), flush=True)


def kernel_category(name: str) -> str:
    """Rough kind of a CUDA kernel from its name (cuDNN/cuBLAS/Triton naming)."""
    n = name.lower()
    for key, label in (("dgrad", "conv dgrad"), ("wgrad", "conv wgrad"), ("fprop", "conv forward"),
                       ("triton_red", "triton reduction"), ("triton_per", "triton reduction"),
                       ("triton_poi", "triton pointwise"), ("triton", "triton other"), ("fmha", "attention"),
                       ("attention", "attention"), ("multi_tensor", "optimizer / clipping"),
                       ("gemm", "matmul"), ("nvjet", "matmul"), ("cutlass", "matmul"), ("conv", "conv other"),
                       ("nchw", "layout transposes"), ("nhwc", "layout transposes"), ("transpose", "layout transposes"),
                       ("reduce", "aten reduction"), ("elementwise", "aten pointwise"), ("copy", "copies")):
        if key in n:
            return label
    return "other"


_REFERENCE: dict = {}  # the fp32 results and the eager bf16 errors, computed once per process


def check_against_fp32(args: argparse.Namespace, variant: str) -> dict:
    """Max |difference| of log-probs and relative gradient errors of `variant` (bf16) and of plain eager bf16 vs fp32.

    Also names the tensors whose gradient error is over twice eager bf16's and over 5% (none expected).
    """
    device = args.device
    torch.manual_seed(0)
    reference = SteveAgentPolicy(preset(args.preset)).to(device)
    apply_freeze(reference, [])
    window = random_window(args.batch_size, args.trunc_t, device, torch.Generator(device=device).manual_seed(1))
    state = reference.initial_state(args.batch_size, device)

    def run(policy, use_autocast: bool):
        policy.zero_grad(set_to_none=True)
        obs = {"img": window["img"], "mineclip_embed": window["mineclip_embed"]}
        with autocast(device) if use_autocast else torch.autocast(device_type="cpu", enabled=False):
            pd, _, _ = policy(obs, window["firsts"], state)
            loss = -action_log_prob(pd, {"buttons": window["buttons"], "camera": window["camera"]}).sum(1).mean()
        loss.backward()
        logp = torch.cat([pd["buttons"].float(), pd["camera"].float()], -1).detach()
        return logp, {n: p.grad.float().clone() for n, p in policy.named_parameters() if p.grad is not None}

    def errors(policy) -> tuple[dict, dict]:
        logp, grads = run(policy, True)
        ref_logp, ref_grads = _REFERENCE["fp32"]
        per_tensor = {n: ((grads[n] - g).norm() / g.norm().clamp(min=1e-30)).item() for n, g in ref_grads.items()}
        total = (torch.stack([(grads[n] - g).norm() ** 2 for n, g in ref_grads.items()]).sum().sqrt()
                 / torch.stack([g.norm() ** 2 for g in ref_grads.values()]).sum().sqrt()).item()
        worst = max(per_tensor, key=per_tensor.get)
        summary = {"logprob_max_abs_diff": round((logp - ref_logp).abs().max().item(), 5), "grad_rel_err_all": round(total, 5),
                   "grad_rel_err_worst_tensor": round(per_tensor[worst], 5), "worst_tensor": worst}
        return summary, per_tensor

    if "fp32" not in _REFERENCE:
        tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        _REFERENCE["fp32"] = run(reference, False)
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
        policy = copy.deepcopy(reference)
        speed_up(policy, "eager", args)
        _REFERENCE["eager_bf16"] = errors(policy)
        del policy
    policy = copy.deepcopy(reference)
    speed_up(policy, variant, args)
    fast, per_tensor = errors(policy)
    eager, eager_per_tensor = _REFERENCE["eager_bf16"]
    fast["suspicious_tensors"] = {n: round(e, 4) for n, e in per_tensor.items() if e > 0.05 and e > 2 * eager_per_tensor[n]}
    return {"benchmark": "bf16_paths_vs_fp32", "variant": variant, "batch_size": args.batch_size, "trunc_t": args.trunc_t,
            "eager_bf16": eager, "fast_bf16": fast}


def main() -> None:
    args = parse_args()
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    variants = args.variants.split(",")
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        raise SystemExit(f"unknown --variants {unknown}; choose from {', '.join(VARIANTS)}")
    for i, variant in enumerate(variants):
        print(json.dumps(measure(variant, args, args.profile if i == 0 else None)), flush=True)
        if args.check and variant.startswith(("regional", "compile")):
            print(json.dumps(check_against_fp32(args, variant)), flush=True)
        torch._dynamo.reset()  # each variant's first step includes its own compilation
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
