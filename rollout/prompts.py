"""What the agent is asked to do: text and visual prompts, and the goal embedding each becomes.

- A text prompt goes through MineCLIP's text encoder and then the prior (text embedding -> a visual goal
  embedding), as STEVE-1 does; STEVE-1 used classifier-free guidance 6.0 for text prompts.
- A visual prompt is a goal embedding saved as .npy (shape (512,) or (1, 512), e.g. by
  `.venv/bin/python -m mineclip_model.embed_cli`), or a video clip whose first 16 frames MineCLIP embeds on the fly
  (as embed_cli does with --start_frame 0); STEVE-1 used guidance 7.0 for visual prompts.
- A prompts file lists several, one per line:
      text: chop a tree
      visual: clips/dig_dirt.mp4        (a relative path is relative to the prompts file's folder)
      # comments and blank lines are skipped
Every problem is found before any model loads and reported as one line naming the file and line.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from toolkit_utils import cli

TEXT_COND_SCALE = 6.0  # STEVE-1's text_cond_scale
VISUAL_COND_SCALE = 7.0  # STEVE-1's visual_cond_scale
EMBED_DIM = 512
EMBEDDING_SUFFIXES = (".npy",)
VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov")
MAX_NAME_CHARS = 60
PROMPT_FILE_EXAMPLE = "write e.g. 'text: chop a tree' or 'visual: clips/tree.mp4'"


@dataclass(frozen=True)
class Prompt:
    """One prompt: `text` for a text prompt, `visual_path` for a visual one; `source` says where it was given."""

    source: str
    text: str | None = None
    visual_path: Path | None = None

    @property
    def kind(self) -> str:
        return "text" if self.text is not None else "visual"

    @property
    def default_cond_scale(self) -> float:
        return TEXT_COND_SCALE if self.kind == "text" else VISUAL_COND_SCALE

    @property
    def is_video(self) -> bool:
        return self.visual_path is not None and self.visual_path.suffix.lower() in VIDEO_SUFFIXES

    @property
    def name(self) -> str:
        """File-name stem of this prompt's videos: the text (or 'visual_' + the file's stem) in [a-z0-9_] only
        (lower case, so names differ on case-insensitive file systems too)."""
        shown = self.text if self.text is not None else f"visual_{self.visual_path.stem}"
        return re.sub(r"[^a-z0-9]+", "_", shown.lower()).strip("_")[:MAX_NAME_CHARS] or "prompt"

    def describe(self) -> str:
        return repr(self.text) if self.text is not None else str(self.visual_path)


def text_prompt(text: str, source: str) -> Prompt:
    """A text prompt; SettingError when it is empty."""
    if not text.strip():
        cli.refuse(source, repr(text), "is an empty prompt", "say what the agent should do, e.g. 'chop a tree'")
    return Prompt(source=source, text=text.strip())


def visual_prompt(path: str | os.PathLike, source: str) -> Prompt:
    """A visual prompt file (.npy embedding or a video clip); SettingError when it is missing or of another kind."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in EMBEDDING_SUFFIXES + VIDEO_SUFFIXES:
        cli.refuse(source, path, f"is neither a .npy goal embedding nor a video ({', '.join(VIDEO_SUFFIXES)})",
                   "save an embedding with .venv/bin/python -m mineclip_model.embed_cli, or give an mp4 clip")
    cli.existing_file(source, path, "check the path")
    return Prompt(source=source, visual_path=path)


def read_prompts_file(path: str | os.PathLike) -> list[Prompt]:
    """The prompts of a prompts file (format in the module docstring); SettingError naming file:line for a bad line."""
    path = cli.existing_file("--prompts_file", path, "give a text file with lines like 'text: chop a tree'")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as error:
        cli.refuse("--prompts_file", path, f"is not UTF-8 text ({error.reason} at byte {error.start})",
                   "save it as UTF-8 text")
    prompts = []
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        where = f"{path}:{number}"
        kind, colon, value = stripped.partition(":")
        kind = kind.strip().lower()
        if not colon or kind not in ("text", "visual"):
            cli.refuse(where, repr(stripped), "does not start with 'text:' or 'visual:'", PROMPT_FILE_EXAMPLE)
        value = value.strip()
        if kind == "text":
            prompts.append(text_prompt(value, where))
        elif not value:
            cli.refuse(where, repr(stripped), "names no file", PROMPT_FILE_EXAMPLE)
        else:
            file = Path(value).expanduser()
            prompts.append(visual_prompt(file if file.is_absolute() else path.parent / file, where))
    if not prompts:
        cli.refuse("--prompts_file", path, "holds no prompt (only blank or # lines)", PROMPT_FILE_EXAMPLE)
    return prompts


def check_distinct_names(prompts: list[Prompt]) -> None:
    """SettingError when two prompts would write the same video files."""
    seen: dict[str, Prompt] = {}
    for prompt in prompts:
        other = seen.setdefault(prompt.name, prompt)
        if other is not prompt:
            cli.refuse(prompt.source, prompt.describe(), f"gives the same video name {prompt.name!r} as {other.source}",
                       "reword one of them or drop the duplicate")


def load_goal_file(prompt: Prompt) -> np.ndarray:
    """The (512,) float32 goal embedding of a .npy visual prompt; SettingError when it is not one."""
    try:
        goal = np.load(prompt.visual_path, allow_pickle=False)
    except (OSError, ValueError) as error:
        cli.refuse(prompt.source, prompt.visual_path, f"is not a readable .npy file ({error})",
                   "save it with .venv/bin/python -m mineclip_model.embed_cli")
    if goal.dtype.kind != "f" or goal.size != EMBED_DIM or goal.squeeze().ndim != 1 or not np.isfinite(goal).all():
        cli.refuse(prompt.source, prompt.visual_path,
                   f"holds {goal.dtype} {list(goal.shape)}, not a finite {EMBED_DIM}-value MineCLIP embedding",
                   "save one with .venv/bin/python -m mineclip_model.embed_cli (shape (512,))")
    return goal.reshape(EMBED_DIM).astype(np.float32)


def check_clip_length(prompt: Prompt) -> None:
    """SettingError when a video prompt cannot be read or has fewer than 16 frames."""
    from data.video_io import VideoError, VideoReader
    from mineclip_model.embedding import WINDOW

    try:
        with VideoReader(prompt.visual_path) as reader:
            frames = reader.num_frames
    except (VideoError, OSError, ValueError) as error:
        cli.refuse(prompt.source, prompt.visual_path, f"cannot be read as a video ({error})", "give an mp4 clip")
    if frames < WINDOW:
        cli.refuse(prompt.source, prompt.visual_path, f"has {frames} frames; a visual prompt needs {WINDOW}",
                   f"give a clip of at least {WINDOW} frames (its first {WINDOW} are used)")


class GoalEmbedder:
    """Turns prompts into goal embeddings; MineCLIP and the prior are loaded on first need, once."""

    def __init__(self, mineclip_weights: str | os.PathLike, prior_weights: str | os.PathLike, device: str,
                 deterministic_prior: bool = False) -> None:
        self.mineclip_weights, self.prior_weights = mineclip_weights, prior_weights
        self.device, self.deterministic_prior = device, deterministic_prior
        self._mineclip = self._prior = None

    def _load_mineclip(self):
        if self._mineclip is None:
            from mineclip_model.mineclip import load_mineclip

            self._mineclip = load_mineclip(self.mineclip_weights, device=self.device)
        return self._mineclip

    def goal(self, prompt: Prompt, seed: int) -> np.ndarray:
        """The (512,) float32 goal embedding the agent is conditioned on; `seed` seeds the prior's z."""
        if prompt.text is not None:
            return self.text_goal(prompt.text, seed)
        if not prompt.is_video:
            return load_goal_file(prompt)
        from mineclip_model.embed_cli import read_clip
        from mineclip_model.embedding import embed_clip

        return embed_clip(self._load_mineclip(), read_clip(str(prompt.visual_path), 0), device=self.device)

    def text_goal(self, text: str, seed: int) -> np.ndarray:
        """Text -> tokenizer -> MineCLIP text embedding -> the prior's sample (z ~ N(0, I) from `seed`, or z = 0)."""
        from mineclip_model.embedding import embed_text
        from prior_model.prior import load_prior

        text_embedding = torch.from_numpy(embed_text(self._load_mineclip(), [text], device=self.device)).to(self.device)
        if self._prior is None:
            self._prior = load_prior(self.prior_weights, device=self.device)
        generator = torch.Generator(device=self.device).manual_seed(seed)
        with torch.no_grad():
            goal = self._prior.sample(text_embedding, deterministic=self.deterministic_prior, generator=generator)
        return goal[0].float().cpu().numpy()
