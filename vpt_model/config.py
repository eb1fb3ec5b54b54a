"""Policy configuration: the kwargs of a VPT `.model` file as a checked dataclass, plus built-in presets."""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Mapping

from vpt_model.transformer import ATTENTION_MASK_STYLES

# The released 2x model (its 2x.model kwargs); 1x/3x differ only in width.
VPT_2X_POLICY_KWARGS: dict[str, Any] = {
    "attention_heads": 16,
    "attention_mask_style": "clipped_causal",
    "attention_memory_size": 256,
    "diff_mlp_embedding": False,
    "hidsize": 2048,
    "img_shape": [128, 128, 3],
    "impala_chans": [16, 32, 32],
    "impala_kwargs": {"post_pool_groups": 1},
    "impala_width": 8,
    "init_norm_kwargs": {"batch_norm": False, "group_norm_groups": 1},
    "n_recurrence_layers": 4,
    "only_img_input": True,
    "pointwise_ratio": 4,
    "pointwise_use_activation": False,
    "recurrence_is_residual": True,
    "recurrence_type": "transformer",
    "timesteps": 128,
    "use_pointwise_layer": True,
    "use_pre_lstm_ln": False,
}
VPT_TEMPERATURE = 2.0

# kwargs that exist in VPT model files but do not change the network we build.
_NO_EFFECT_KWARGS = {"only_img_input", "active_reward_monitors", "single_output", "input_shape", "obs_processing_width"}


@dataclasses.dataclass(frozen=True)
class PolicyConfig:
    """Architecture of a VPT policy (names follow the `.model` kwargs)."""

    hidsize: int = 2048
    img_shape: tuple[int, int, int] = (128, 128, 3)
    impala_chans: tuple[int, ...] = (16, 32, 32)
    impala_width: int = 8
    impala_post_pool_groups: int | None = 1
    conv_norm: str | None = "group"  # GroupNorm(1, C) on conv inputs; LayerNorm on dense inputs
    first_conv_norm: bool = False
    attention_heads: int = 16
    attention_mask_style: str = "clipped_causal"  # "none": the IDM's attention to the whole chunk
    attention_memory_size: int = 256
    timesteps: int = 128
    n_recurrence_layers: int = 4
    pointwise_ratio: int = 4
    pointwise_use_activation: bool = False
    use_pre_lstm_ln: bool = False
    temperature: float = VPT_TEMPERATURE
    mineclip_embed_dim: int = 512  # only used by the goal-conditioned (STEVE-1) policy

    @property
    def cnn_channels(self) -> tuple[int, ...]:
        return tuple(int(self.impala_width * c) for c in self.impala_chans)

    @classmethod
    def from_policy_kwargs(cls, kwargs: Mapping[str, Any], pi_head_kwargs: Mapping[str, Any] | None = None) -> "PolicyConfig":
        """Build from a `.model` file's `net.args` (+ `pi_head_opts`); refuse what we do not implement."""
        kw = dict(kwargs)
        unsupported = []

        def expect(name: str, ok: Any, default: Any) -> None:
            if kw.pop(name, default) != ok:
                unsupported.append(f"{name}={kwargs.get(name)!r} (only {ok!r} is implemented)")

        expect("recurrence_type", "transformer", "lstm")
        if kw.get("attention_mask_style", "clipped_causal") not in ATTENTION_MASK_STYLES:
            unsupported.append(f"attention_mask_style={kw['attention_mask_style']!r} (only {ATTENTION_MASK_STYLES})")
        expect("use_pointwise_layer", True, True)
        expect("recurrence_is_residual", True, True)
        expect("diff_mlp_embedding", False, False)
        expect("img_statistics", None, None)
        expect("scale_input_img", True, True)
        norm_kwargs = dict(kw.pop("init_norm_kwargs", {}) or {})
        if norm_kwargs.pop("batch_norm", False):
            unsupported.append("init_norm_kwargs.batch_norm=True")
        groups = norm_kwargs.pop("group_norm_groups", None)
        if groups not in (None, 1):
            unsupported.append(f"init_norm_kwargs.group_norm_groups={groups}")
        if norm_kwargs.pop("layer_norm", False):
            unsupported.append("init_norm_kwargs.layer_norm=True")
        if norm_kwargs:
            unsupported.append(f"init_norm_kwargs {sorted(norm_kwargs)}")
        impala_kwargs = dict(kw.pop("impala_kwargs", {}) or {})
        post_pool_groups = impala_kwargs.pop("post_pool_groups", None)
        if impala_kwargs:
            unsupported.append(f"impala_kwargs {sorted(impala_kwargs)}")
        if unsupported:
            raise ValueError("unsupported policy kwargs: " + "; ".join(unsupported))

        fields = {f.name for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {
            "conv_norm": "group" if groups == 1 else None,
            "impala_post_pool_groups": post_pool_groups,
        }
        for name in list(kw):
            if name in fields:
                value = kw.pop(name)
                values[name] = tuple(value) if isinstance(value, list) else value
        ignored = sorted(set(kw) - _NO_EFFECT_KWARGS)
        if ignored:
            warnings.warn(f"ignoring unknown policy kwargs {ignored}", stacklevel=2)
        pi_head_kwargs = dict(pi_head_kwargs or {})
        values["temperature"] = float(pi_head_kwargs.pop("temperature", 1.0))
        if pi_head_kwargs:
            raise ValueError(f"unsupported pi_head kwargs {sorted(pi_head_kwargs)}")
        return cls(**values)

    def to_policy_kwargs(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The (net.args, pi_head_opts) a `.model` file would hold for this config."""
        kwargs = dict(VPT_2X_POLICY_KWARGS)
        kwargs.update(
            hidsize=self.hidsize,
            img_shape=list(self.img_shape),
            impala_chans=list(self.impala_chans),
            impala_width=self.impala_width,
            impala_kwargs={"post_pool_groups": self.impala_post_pool_groups},
            init_norm_kwargs={"batch_norm": False, "group_norm_groups": 1 if self.conv_norm else None},
            first_conv_norm=self.first_conv_norm,
            attention_heads=self.attention_heads,
            attention_mask_style=self.attention_mask_style,
            attention_memory_size=self.attention_memory_size,
            timesteps=self.timesteps,
            n_recurrence_layers=self.n_recurrence_layers,
            pointwise_ratio=self.pointwise_ratio,
            pointwise_use_activation=self.pointwise_use_activation,
            use_pre_lstm_ln=self.use_pre_lstm_ln,
        )
        return kwargs, {"temperature": self.temperature}


PRESET_NAMES = ("2x", "1x", "3x", "tiny")


def preset(name: str) -> PolicyConfig:
    """Built-in configs: the released sizes ('1x', '2x', '3x') and 'tiny' (tests, CPU demo)."""
    base = PolicyConfig.from_policy_kwargs(VPT_2X_POLICY_KWARGS, {"temperature": VPT_TEMPERATURE})
    presets = {
        "2x": base,
        "1x": dataclasses.replace(base, hidsize=1024, impala_width=4),
        "3x": dataclasses.replace(base, hidsize=3072, impala_width=12),
        # Same structure, tiny sizes: 2 blocks, a cache of 8 frames, 128x128 input kept.
        "tiny": dataclasses.replace(
            base,
            hidsize=32,
            impala_width=1,
            impala_chans=(4, 8, 8),
            attention_heads=4,
            attention_memory_size=24,
            timesteps=16,
            n_recurrence_layers=2,
            pointwise_ratio=2,
            mineclip_embed_dim=512,
        ),
    }
    if name not in presets:
        raise ValueError(f"unknown policy preset {name!r}; choose one of {sorted(presets)} or pass a .model file")
    return presets[name]
