"""The CNN's 3x3/2 max-pool on the GPU: max_pool_3x3_s2 (vpt_model/layers.py) against F.max_pool2d, both compiled.

    python benchmarks/bench_max_pool.py --frames 768

Input: the first stack's firstconv output, (frames, 128, 128, 128) bf16 channels-last, with many ties
(values on a coarse grid). Checks that forward values and input gradients are identical (integer-valued
output gradients, so sums are exact) and prints one JSON line per size with the forward+backward ms of
each and whether they matched.
"""

from __future__ import annotations

import argparse
import json

import torch
import torch.nn.functional as F
from triton.testing import do_bench

from vpt_model.layers import max_pool_3x3_s2


def aten_pool(x: torch.Tensor) -> torch.Tensor:
    return F.max_pool2d(x, kernel_size=3, stride=2, padding=1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", default="64,768", help="comma-separated frame counts")
    p.add_argument("--channels", type=int, default=128, help="channels")
    p.add_argument("--size", type=int, default=128, help="height and width")
    args = p.parse_args()
    ours, theirs = torch.compile(max_pool_3x3_s2, dynamic=False), torch.compile(aten_pool, dynamic=False)
    for frames in (int(f) for f in args.frames.split(",")):
        g = torch.Generator(device="cuda").manual_seed(frames)
        shape = (frames, args.channels, args.size, args.size)
        x = (torch.randint(-8, 9, shape, device="cuda", generator=g) / 4).bfloat16().contiguous(memory_format=torch.channels_last)
        grad = torch.randint(-3, 4, (frames, args.channels, args.size // 2, args.size // 2), device="cuda", generator=g).bfloat16()
        results = {}
        for name, fn in (("max_pool_3x3_s2", ours), ("F.max_pool2d", theirs)):
            leaf = x.detach().requires_grad_()
            out = fn(leaf)
            out.backward(grad)
            results[name] = (out.detach(), leaf.grad)

            def step(fn=fn):
                leaf = x.detach().requires_grad_()
                fn(leaf).backward(grad)

            results[name + "_ms"] = do_bench(step, warmup=50, rep=200, return_mode="median")
        (a_out, a_grad), (b_out, b_grad) = results["max_pool_3x3_s2"], results["F.max_pool2d"]
        print(json.dumps({"benchmark": "max_pool_3x3_s2", "shape": list(shape),
                          "ours_fwd_bwd_ms": round(results["max_pool_3x3_s2_ms"], 3),
                          "aten_fwd_bwd_ms": round(results["F.max_pool2d_ms"], 3),
                          "same_output": bool(torch.equal(a_out, b_out)), "same_grad": bool(torch.equal(a_grad, b_grad)),
                          "grad_channels_last": a_grad.is_contiguous(memory_format=torch.channels_last)}), flush=True)


if __name__ == "__main__":
    main()
