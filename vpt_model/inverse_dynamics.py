"""VPT's inverse dynamics model (IDM): which actions a player took, predicted from the video around each frame.

`InverseActionPolicy` = `net` + `pi_head`, attribute names as in the released `4x_idm.weights`:
- `net` (`InverseActionNet`): a Conv3d over time (`conv3d_layer`, kernel 5x1x1: each pixel sees its own
  value two frames back and forward) in front of the VPT trunk of `vpt_model.policy` (ImpalaCNN on the
  16 conv3d channels, transformer with attention_mask_style "none": every frame attends to every frame
  of its chunk, the future included), then ReLU -> `final_ln`.
- `pi_head`: 20 independent binary buttons (FACTORED_BUTTONS order) and 2 camera axes (pitch, yaw) of
  11 mu-law bins each: VPT's identity "IDM action mapping", not the policy's joint action space.

Call convention (batch-first, T frames per call):
    pd, state = idm(obs, first, state)
    obs["img"]: (B, T, 128, 128, 3) uint8 RGB frames (resized like the policy's input)
    first:      (B, T) bool; ignored by attention_mask_style "none" (the original ignores it too)
    pd:         {"buttons": (B, T, 20, 2), "camera": (B, T, 2, 11)} log-probabilities (float32)

Source: VPT `lib/policy.py` (InverseActionNet, InverseActionPolicy), `inverse_dynamics_model.py`
(IDMAgent: argmax actions, camera de-quantised like the policy's), `lib/action_mapping.py` (IDMActionMapping).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from toolkit_utils.state_dicts import StateDictMismatchError, check_state_dict, read_state_dict, strip_key_prefixes
from vpt_model.action_head import CategoricalHead
from vpt_model.action_space import ENV_BUTTONS, FACTORED_BUTTONS, N_CAMERA_BINS, undiscretize_camera
from vpt_model.config import PolicyConfig
from vpt_model.layers import NormedLayer
from vpt_model.model_files import read_model_file
from vpt_model.policy import MinecraftPolicy, PolicyState

N_IDM_BUTTONS = len(FACTORED_BUTTONS)  # 20 binary outputs
N_IDM_CAMERA_AXES = 2  # pitch, yaw
# Per-frame confidence columns: the probability of each output's chosen class.
CONFIDENCE_NAMES: tuple[str, ...] = FACTORED_BUTTONS + ("camera_pitch", "camera_yaw")
IMG_CHANNELS = 3

# net.args of the released 4x_idm.model (pi_head_opts: temperature 1). impala_chans is absent there: the
# default (16, 32, 32) applies, times impala_width 8.
IDM_4X_MODEL_KWARGS: dict[str, Any] = {
    "attention_heads": 16,
    "attention_mask_style": "none",
    "attention_memory_size": 16,
    "conv3d_params": {"inchan": 3, "kernel_size": [5, 1, 1], "outchan": 16, "padding": [2, 0, 0]},
    "hidsize": 1024,
    "img_shape": [128, 128, 16],
    "impala_kwargs": {"post_pool_groups": 1},
    "impala_width": 8,
    "init_norm_kwargs": {"batch_norm": False, "group_norm_groups": 1},
    "n_recurrence_layers": 2,
    "only_img_input": True,
    "pointwise_ratio": 4,
    "pointwise_use_activation": False,
    "recurrence_is_residual": True,
    "recurrence_type": "transformer",
    "single_output": True,
    "timesteps": 16,
    "use_pointwise_layer": True,
    "use_pre_lstm_ln": False,
}
IDM_TEMPERATURE = 1.0


@dataclasses.dataclass(frozen=True)
class IDMConfig:
    """Architecture of an IDM: the trunk's config plus the temporal convolution in front of it."""

    trunk: PolicyConfig
    conv3d_kernel: tuple[int, int, int] = (5, 1, 1)  # (time, height, width)
    conv3d_out: int = 16

    @classmethod
    def from_model_kwargs(cls, net_args: Mapping[str, Any], pi_head_opts: Mapping[str, Any] | None = None) -> "IDMConfig":
        """Build from a `.model` file's `net.args` (+ `pi_head_opts`); ValueError names what is not implemented."""
        kw = dict(net_args)
        if kw.get("conv3d_params") is None:  # VPT's InverseActionNet allows none, but every released IDM has one
            raise ValueError("no conv3d_params: this is a policy's .model, not an inverse dynamics model's (4x_idm.model)")
        kernel, out = _parse_conv3d_params(kw.pop("conv3d_params"))
        kw.pop("first_conv_norm", None)  # the IDM decides it: the first CNN conv is normalised after the Conv3d
        img_shape = list(kw.get("img_shape") or [])
        if len(img_shape) != 3 or img_shape[2] != out:
            raise ValueError(f"img_shape {img_shape} must be [H, W, {out}] (the channels the Conv3d hands the CNN)")
        trunk = PolicyConfig.from_policy_kwargs({**kw, "first_conv_norm": True}, pi_head_opts)
        return cls(trunk=trunk, conv3d_kernel=kernel, conv3d_out=out)

    def to_model_kwargs(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The (net.args, pi_head_opts) a `.model` file would hold for this config (VPT's InverseActionNet reads them)."""
        net_args, pi_head_opts = self.trunk.to_policy_kwargs()
        net_args.pop("first_conv_norm")  # InverseActionNet sets it itself; passing it too is a TypeError there
        net_args.pop("diff_mlp_embedding")
        net_args["single_output"] = True
        net_args["conv3d_params"] = {
            "inchan": IMG_CHANNELS, "outchan": self.conv3d_out, "kernel_size": list(self.conv3d_kernel),
            "padding": [k // 2 for k in self.conv3d_kernel],
        }
        return net_args, pi_head_opts


def _parse_conv3d_params(conv3d: Any) -> tuple[tuple[int, int, int], int]:
    """conv3d_params {inchan, outchan, kernel_size, padding} -> (kernel, outchan); refuses what we do not build."""
    if not isinstance(conv3d, Mapping):
        raise ValueError(f"conv3d_params is {type(conv3d).__name__}, expected a dict")
    extra = sorted(set(conv3d) - {"inchan", "outchan", "kernel_size", "padding"})
    if extra:
        raise ValueError(f"conv3d_params {extra} are not implemented (only inchan, outchan, kernel_size, padding)")
    if conv3d.get("inchan") != IMG_CHANNELS:
        raise ValueError(f"conv3d_params inchan {conv3d.get('inchan')!r}: the IDM sees RGB frames, inchan must be 3")
    kernel = conv3d.get("kernel_size")
    if not (isinstance(kernel, (list, tuple)) and len(kernel) == 3 and all(isinstance(k, int) and k % 2 for k in kernel)):
        raise ValueError(f"conv3d_params kernel_size {kernel!r}: expected three odd whole numbers")
    same = [k // 2 for k in kernel]
    if list(conv3d.get("padding", [0, 0, 0])) != same:
        raise ValueError(f"conv3d_params padding {conv3d.get('padding')!r}: only 'same' padding {same} is implemented")
    out = conv3d.get("outchan")
    if not isinstance(out, int) or out < 1:
        raise ValueError(f"conv3d_params outchan {out!r}: expected a positive whole number")
    return tuple(kernel), out  # type: ignore[return-value]


def idm_preset(name: str) -> IDMConfig:
    """'4x' (the released 4x_idm.model) or 'tiny' (tests and CPU demos: same structure, small sizes)."""
    if name == "4x":
        return IDMConfig.from_model_kwargs(IDM_4X_MODEL_KWARGS, {"temperature": IDM_TEMPERATURE})
    if name == "tiny":
        tiny = {**IDM_4X_MODEL_KWARGS, "hidsize": 32, "impala_width": 1, "impala_chans": [4, 8, 8],
                "attention_heads": 4, "pointwise_ratio": 2, "img_shape": [128, 128, 4],
                "conv3d_params": {**IDM_4X_MODEL_KWARGS["conv3d_params"], "outchan": 4}}
        return IDMConfig.from_model_kwargs(tiny, {"temperature": IDM_TEMPERATURE})
    raise ValueError(f"unknown IDM preset {name!r}; choose '4x' or 'tiny', or pass a .model file")


class InverseActionNet(MinecraftPolicy):
    """The IDM trunk (`net`): Conv3d over time -> ImpalaCNN -> transformer -> ReLU -> final_ln."""

    def __init__(self, config: IDMConfig) -> None:
        super().__init__(config.trunk)
        # No norm on the raw pixels, so the layer has a bias.
        self.conv3d_layer = NormedLayer(IMG_CHANNELS, config.conv3d_out, "conv3d", kernel_size=config.conv3d_kernel)

    def forward(  # type: ignore[override]
        self, obs: dict[str, torch.Tensor], first: torch.Tensor, state: PolicyState
    ) -> tuple[torch.Tensor, PolicyState]:
        img = obs["img"]
        height, width = self.config.img_shape[:2]
        if img.ndim != 5 or tuple(img.shape[2:]) != (height, width, IMG_CHANNELS):
            raise ValueError(f"obs['img'] must be (B, T, {height}, {width}, 3), got {tuple(img.shape)}")
        x = img.float() / 255.0
        x = self.conv3d_layer(x.permute(0, 4, 1, 2, 3)).permute(0, 2, 3, 4, 1)  # over (B, C, T, H, W), and back
        x = self.img_process(x)  # (B, T, hidsize); the IDM has no pre_lstm_ln in its forward, even if built
        x, state = self.recurrent_layer(x, first.bool(), state)
        # The original computes lastlayer(x) here and then overwrites it with final_ln(x): lastlayer's weights
        # are in the state dict but change nothing, so the dead computation is skipped.
        return self.final_ln(F.relu(x)), state


class FactoredCategoricalHead(CategoricalHead):
    """`n` independent categorical outputs of `classes` classes each, from one linear layer of n * classes."""

    def __init__(self, in_features: int, n: int, classes: int, temperature: float) -> None:
        super().__init__(in_features, n * classes, temperature)
        self.shape = (n, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, D) -> (B, T, n, classes) log-probs (float32)."""
        logits = self.linear_layer(x).reshape(*x.shape[:-1], *self.shape) / self.temperature
        return F.log_softmax(logits.float(), dim=-1)


class IDMActionHead(nn.Module):
    """`pi_head`: buttons (20 x 2 classes) and camera (2 axes x 11 bins)."""

    def __init__(self, in_features: int, temperature: float) -> None:
        super().__init__()
        self.buttons = FactoredCategoricalHead(in_features, N_IDM_BUTTONS, 2, temperature)
        self.camera = FactoredCategoricalHead(in_features, N_IDM_CAMERA_AXES, N_CAMERA_BINS, temperature)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"buttons": self.buttons(x), "camera": self.camera(x)}


class InverseActionPolicy(nn.Module):
    """The IDM: `net` + `pi_head` (no value head)."""

    def __init__(self, config: IDMConfig) -> None:
        super().__init__()
        self.config = config
        self.net = InverseActionNet(config)
        self.pi_head = IDMActionHead(config.trunk.hidsize, config.trunk.temperature)

    def forward(
        self, obs: dict[str, torch.Tensor], first: torch.Tensor, state: PolicyState
    ) -> tuple[dict[str, torch.Tensor], PolicyState]:
        latent, state = self.net(obs, first, state)
        return self.pi_head(latent), state

    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> PolicyState:
        """Empty recurrent state; with memory == timesteps (the 4x IDM) it holds nothing at all."""
        return self.net.initial_state(batch_size, device)


def argmax_actions(pd: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Deterministic IDM actions and their confidence, as IDMAgent.predict_actions picks them.

    Returns buttons (B, T, 20) and camera bins (B, T, 2) as int64 (ties go to the lower class, like
    torch.argmax in the original), and confidence (B, T, 22) float32: the probability of each output's
    chosen class, columns in CONFIDENCE_NAMES order.
    """
    buttons_logp, buttons = pd["buttons"].max(dim=-1)
    camera_logp, camera = pd["camera"].max(dim=-1)
    confidence = torch.cat([buttons_logp, camera_logp], dim=-1).exp()
    return buttons, camera, confidence


def idm_actions_to_env(buttons: np.ndarray, camera_bins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """IDM outputs -> env action arrays: buttons (N, 23) uint8 in ENV_BUTTONS order, camera (N, 2) float32 degrees.

    Identity button mapping (every predicted button is kept, opposite keys included); camera bins
    de-quantised with the policy's inverse mu-law (VPT's ActionTransformer.policy2env).
    """
    buttons, camera_bins = np.asarray(buttons), np.asarray(camera_bins)
    env_buttons = np.zeros((len(buttons), len(ENV_BUTTONS)), dtype=np.uint8)
    env_buttons[:, :N_IDM_BUTTONS] = buttons != 0
    return env_buttons, undiscretize_camera(camera_bins).astype(np.float32)


def load_idm_config(model: str | os.PathLike) -> IDMConfig:
    """A `.model` path (read with the same object-refusing unpickler as the policy's) or a preset name."""
    if str(model).endswith(".model") or os.path.isfile(model):
        net_args, pi_head_opts = read_model_file(model)
        try:
            return IDMConfig.from_model_kwargs(net_args, pi_head_opts)
        except ValueError as e:
            raise ValueError(f"{model}: not an inverse dynamics model this toolkit builds ({e})") from None
    return idm_preset(str(model))


def load_idm_weights(idm: InverseActionPolicy, path: str | os.PathLike) -> None:
    """Load a `.weights` file strictly: every missing, unexpected or misshapen key is named (StateDictMismatchError)."""
    state_dict = strip_key_prefixes(read_state_dict(path))
    if any(key.startswith("value_head.") for key in state_dict):
        raise StateDictMismatchError(
            f"{path}: this is a VPT policy's weights file (it has value_head.*), not the inverse dynamics model's; "
            "use 4x_idm.weights"
        )
    check_state_dict(idm, state_dict, str(path), hint="is it the 4x_idm.weights that goes with the IDM .model file?")
    idm.load_state_dict(state_dict, strict=True)


def load_idm(model: str | os.PathLike, weights: str | os.PathLike | None, device: torch.device | str = "cpu") -> InverseActionPolicy:
    """Build the IDM from a `.model` file (or preset name), load `weights` strictly (None: keep random init), eval mode."""
    idm = InverseActionPolicy(load_idm_config(model))
    if weights is not None:
        load_idm_weights(idm, weights)
    return idm.to(device).eval()
