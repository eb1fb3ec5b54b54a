"""Fast MineCLIP embeddings of videos, clips and texts, as STEVE-1 uses them.

STEVE-1 stores one goal embedding per frame: row i is MineCLIP's video embedding of the 16
frames i-15..i (rows 0..14 have no full window). The original recomputes every frame's ViT
features 16 times; here each frame's features are computed once, in large batches, and the
(cheap) temporal encoder then slides over them.

Precision on CUDA: float16 autocast by default. STEVE-1 computed its dataset embeddings under
`torch.cuda.amp.autocast()`, which is float16, and float16 keeps 3 more mantissa bits than
bfloat16 for ~4% less speed. Measured on an H100 (random weights, 585 windows), the embeddings'
relative error against float32 is 8e-4 for float16 (worst cosine 0.9999995) and 6e-3 for
bfloat16. Speed there (8,192 frames, batch 512, numpy in -> numpy out): ~12,100-12,300 frames/s
eager float16, ~13,000 with compile=True; the original code runs 236 frames/s.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import cv2
import numpy as np
import torch
from tqdm.auto import tqdm

from mineclip_model.image_encoder import MINECLIP_FRAME_HEIGHT, MINECLIP_FRAME_WIDTH, RGB_CHANNELS
from mineclip_model.mineclip import MineCLIP
from mineclip_model.temporal_encoder import MINECLIP_CLIP_FRAMES
from mineclip_model.tokenizer import tokenize

WINDOW = MINECLIP_CLIP_FRAMES  # frames per goal embedding
DEFAULT_BATCH_SIZE = 512  # frames per ViT call: large enough to keep an H100's tensor cores busy
AMP_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": None}


def check_mineclip_frames(frames: np.ndarray) -> None:
    """Refuse anything that is not uint8 RGB frames [N, 160, 256, 3], with a message that says the fix."""
    expected = (MINECLIP_FRAME_HEIGHT, MINECLIP_FRAME_WIDTH, RGB_CHANNELS)
    if not isinstance(frames, np.ndarray):
        raise TypeError(f"frames must be a numpy array [N, 160, 256, 3] uint8, got {type(frames).__name__}")
    if frames.ndim != 4 or frames.shape[1:] != expected:
        shape = list(frames.shape)
        if frames.ndim == 4 and frames.shape[1] == RGB_CHANNELS and frames.shape[-1] != RGB_CHANNELS:
            fix = "they look channels-first: use frames.transpose(0, 2, 3, 1)"
        elif frames.ndim == 4 and frames.shape[1:3] == (MINECLIP_FRAME_WIDTH, MINECLIP_FRAME_HEIGHT):
            fix = "height and width are swapped: MineCLIP frames are 160 high and 256 wide"
        elif frames.ndim == 3 and frames.shape == expected:
            fix = "this is one frame: add a leading axis (frames[None])"
        else:
            fix = "resize them with resize_frames_for_mineclip (cv2 INTER_LINEAR to 256 wide x 160 high)"
        raise ValueError(f"frames must have shape [N, 160, 256, 3] (RGB, channels last), got {shape}: {fix}")
    if frames.dtype != np.uint8:
        raise TypeError(
            f"frames must be uint8 RGB with values 0-255, got {frames.dtype}; "
            "convert e.g. with np.clip(frames, 0, 255).astype(np.uint8) (do not pre-divide by 255)"
        )


def resize_frames_for_mineclip(frames: np.ndarray) -> np.ndarray:
    """RGB uint8 frames [H, W, 3] or [N, H, W, 3] -> [..., 160, 256, 3], cv2 INTER_LINEAR as STEVE-1 does."""
    if frames.ndim == 3:
        return resize_frames_for_mineclip(frames[None])[0]
    if frames.ndim != 4 or frames.shape[-1] != RGB_CHANNELS:
        raise ValueError(f"frames must be [H, W, 3] or [N, H, W, 3] RGB, got {list(frames.shape)}")
    if frames.shape[1:3] == (MINECLIP_FRAME_HEIGHT, MINECLIP_FRAME_WIDTH):
        return frames  # STEVE-1 resizes only when the size differs
    size = (MINECLIP_FRAME_WIDTH, MINECLIP_FRAME_HEIGHT)  # cv2 takes (width, height)
    return np.stack([cv2.resize(f, size, interpolation=cv2.INTER_LINEAR) for f in frames])


def _resolve_device_and_dtype(
    model: MineCLIP, device: str | torch.device | None, dtype: str
) -> tuple[torch.device, torch.dtype | None]:
    if device is None:
        device = next(model.parameters()).device
    device = torch.device(device)
    if dtype == "auto":
        dtype = "fp16" if device.type == "cuda" else "fp32"
    if dtype not in AMP_DTYPES:
        raise ValueError(f"dtype must be one of auto, {', '.join(AMP_DTYPES)}; got {dtype!r}")
    return device, AMP_DTYPES[dtype]


def _autocast(device: torch.device, amp_dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if amp_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=amp_dtype)


def _host_tensor(chunk: np.ndarray) -> torch.Tensor:
    """A CPU tensor over `chunk`, copied only when torch cannot share it (strided, or read-only e.g. memory-mapped)."""
    if chunk.flags.c_contiguous and chunk.flags.writeable:
        return torch.from_numpy(chunk)
    return torch.from_numpy(np.array(chunk, order="C"))


def _device_batches(frames: np.ndarray, batch_size: int, device: torch.device) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield (start, uint8 batch on device); on CUDA the next batch's upload overlaps the current compute."""
    n = len(frames)
    if device.type != "cuda":
        for start in range(0, n, batch_size):
            yield start, _host_tensor(frames[start : start + batch_size]).to(device)
        return
    copy_stream = torch.cuda.Stream(device)
    compute_stream = torch.cuda.current_stream(device)
    # two pinned staging buffers: one is filled on the host while the other is being uploaded
    staging = [torch.empty((min(batch_size, n), *frames.shape[1:]), dtype=torch.uint8, pin_memory=True) for _ in range(2)]
    uploaded: list[torch.cuda.Event | None] = [None, None]
    for index, start in enumerate(range(0, n, batch_size)):
        slot = index % 2
        if uploaded[slot] is not None:
            uploaded[slot].synchronize()  # the buffer's previous upload must be done before we overwrite it
        chunk = frames[start : start + batch_size]
        host = staging[slot][: len(chunk)]
        host.copy_(_host_tensor(chunk))
        with torch.cuda.stream(copy_stream):
            batch = host.to(device, non_blocking=True)
            event = torch.cuda.Event()
            event.record(copy_stream)
        uploaded[slot] = event
        compute_stream.wait_event(event)
        batch.record_stream(compute_stream)  # allocated on the copy stream, used on the compute stream
        yield start, batch


def _frame_features(
    model: MineCLIP, frames: np.ndarray, batch_size: int, device: torch.device, compile: bool, progress: bool
) -> Iterator[tuple[int, int, torch.Tensor]]:
    """Fill one float32 [N, embed_dim] buffer on `device` batch by batch; yield (start, end, buffer) after each.

    Runs under the caller's autocast region.
    """
    encode = torch.compile(model.encode_frames, dynamic=False) if compile else model.encode_frames
    features = torch.empty((len(frames), model.config.embed_dim), dtype=torch.float32, device=device)
    with tqdm(total=len(frames), unit="frame", desc="MineCLIP frames", disable=not progress) as bar:
        for start, batch in _device_batches(frames, batch_size, device):
            count = len(batch)
            if compile and count < batch_size:
                # one static shape for the compiled graph: pad the last batch by repeating its last frame
                batch = torch.cat([batch, batch[-1:].expand(batch_size - count, *batch.shape[1:])])
            features[start : start + count] = encode(batch)[:count].float()
            bar.update(count)
            yield start, start + count, features


def _prepare(
    model: MineCLIP, frames: np.ndarray, batch_size: int, device: str | torch.device | None, dtype: str
) -> tuple[torch.device, torch.dtype | None]:
    check_mineclip_frames(frames)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device, amp_dtype = _resolve_device_and_dtype(model, device, dtype)
    model.to(device).eval()
    return device, amp_dtype


@torch.inference_mode()
def encode_frames_batched(
    model: MineCLIP,
    frames: np.ndarray,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: str | torch.device | None = None,
    dtype: str = "auto",
    compile: bool = False,
    progress: bool = True,
) -> torch.Tensor:
    """Per-frame image features of uint8 RGB frames [N, 160, 256, 3] -> float32 [N, embed_dim] on `device`.

    `device` defaults to the model's device (the model is moved when another is given).
    `compile=True` runs the image encoder through torch.compile (the first call compiles for
    ~30 s; batches are padded to `batch_size` so that a single shape is compiled).
    """
    device, amp_dtype = _prepare(model, frames, batch_size, device, dtype)
    features = torch.empty((0, model.config.embed_dim), device=device)
    # one autocast region for all batches: the float16 copies of the weights are made once
    with _autocast(device, amp_dtype):
        for _, _, features in _frame_features(model, frames, batch_size, device, compile, progress):
            pass
    return features


@torch.inference_mode()
def embed_frames_sliding(
    model: MineCLIP,
    frames: np.ndarray,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: str | torch.device | None = None,
    progress: bool = True,
    dtype: str = "auto",
    compile: bool = False,
) -> np.ndarray:
    """STEVE-1's per-frame goal embeddings of a video: uint8 RGB [N, 160, 256, 3] -> float32 [N, embed_dim].

    Row i (i >= 15) is the MineCLIP video embedding of frames i-15..i; rows 0..14 are NaN (no
    full window). `dtype`: "auto" (fp16 autocast on CUDA, fp32 elsewhere), "fp16", "bf16", "fp32".
    See encode_frames_batched for `device` and `compile`.
    """
    device, amp_dtype = _prepare(model, frames, batch_size, device, dtype)
    out = np.full((len(frames), model.config.embed_dim), np.nan, dtype=np.float32)
    if len(frames) < WINDOW:
        return out
    cuda = device.type == "cuda"
    # row j holds the window ending at frame j + 15; pinned so the copies back overlap the GPU work
    embeds = torch.empty((len(frames) - WINDOW + 1, model.config.embed_dim), dtype=torch.float32, pin_memory=cuda)
    with _autocast(device, amp_dtype):
        for start, end, features in _frame_features(model, frames, batch_size, device, compile, progress):
            first = max(start, WINDOW - 1)  # windows whose last frame is in this batch
            if first < end:
                windows = features[first - WINDOW + 1 : end].unfold(0, WINDOW, 1).transpose(1, 2)  # (end - first, 16, E)
                video = model.encode_video_features(windows).float()
                embeds[first - WINDOW + 1 : end - WINDOW + 1].copy_(video, non_blocking=cuda)
    if cuda:
        torch.cuda.current_stream(device).synchronize()  # the non-blocking copies into `embeds` are done
    out[WINDOW - 1 :] = embeds.numpy()
    return out


def embed_clip(
    model: MineCLIP, frames: np.ndarray, device: str | torch.device | None = None, dtype: str = "auto"
) -> np.ndarray:
    """Embedding [embed_dim] of one 16-frame clip [16, 160, 256, 3] (a visual goal prompt)."""
    check_mineclip_frames(frames)
    if len(frames) != WINDOW:
        raise ValueError(f"a clip has exactly {WINDOW} frames, got {len(frames)}; use embed_frames_sliding for videos")
    return embed_frames_sliding(model, frames, batch_size=WINDOW, device=device, progress=False, dtype=dtype)[-1]


@torch.inference_mode()
def embed_text(
    model: MineCLIP, texts: str | Sequence[str], device: str | torch.device | None = None, dtype: str = "auto"
) -> np.ndarray:
    """MineCLIP text features [B, embed_dim] float32 (not normalised), as STEVE-1 feeds its prior."""
    device, amp_dtype = _resolve_device_and_dtype(model, device, dtype)
    model.to(device).eval()
    tokens = tokenize(texts).to(device)
    with _autocast(device, amp_dtype):
        features = model.encode_text(tokens)
    return features.float().cpu().numpy()
