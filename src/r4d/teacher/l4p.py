"""Loading L4P's released weights into r4d's teacher by their key names.

The checkpoint (`l4p_depth_flow_2d3dtrack_camray_dynseg_v1.ckpt`, Lightning) nests tensors under
`state_dict` with `l4p_model.video_encoder.*` (VideoMAEv2 ViT-g) and
`l4p_model.task_heads.<task>.task_head.dpt.*` (3D DPT heads). Encoder names map to transformers'
VideoMAE: `patch_embed.proj` -> `embeddings.patch_embeddings.projection`, `blocks.<i>.norm1/2`
-> `layer.<i>.layernorm_before/after`, the fused `attn.qkv.weight` splits into query / key /
value with `attn.q_bias` / `attn.v_bias` as the query and value biases (the key has none),
`attn.proj` -> `attention.output.dense`, `mlp.fc1/fc2` -> `intermediate.dense` / `output.dense`,
`norm` -> `layernorm`; the fixed position table is not stored. Head tasks map `depth` ->
depth, `flow_2d_backward` -> flow, `dyn_mask` -> motion, `camray` -> camray, and r4d's heads
use L4P's module names, so the rest of a head key carries over; `scratch.layer_rn.<k>` (an alias
of `scratch.layer<k+1>_rn` that PyTorch also saves) and the 2D-track head are dropped.
"""

from __future__ import annotations

from pathlib import Path

import torch

from r4d.errors import InputError
from r4d.io.weights import read_weights
from r4d.teacher.config import TeacherConfig, l4p_config
from r4d.teacher.model import Teacher

ENCODER, HEADS = "l4p_model.video_encoder.", "l4p_model.task_heads."
TASKS = {"depth": "depth", "flow_2d_backward": "flow", "dyn_mask": "motion", "camray": "camray"}
_BLOCK = {
    "norm1": "layernorm_before",
    "norm2": "layernorm_after",
    "attn.proj": "attention.output.dense",
    "mlp.fc1": "intermediate.dense",
    "mlp.fc2": "output.dense",
}


def convert_state_dict(state: dict[str, torch.Tensor]) -> tuple[dict, list[str]]:
    """L4P names -> r4d Teacher names; returns (converted, L4P keys left unused)."""
    out, unused = {}, []
    aliases = {}
    for key, value in state.items():
        if key.startswith(ENCODER):
            name = key.removeprefix(ENCODER)
            if name.startswith("patch_embed.proj."):
                out["encoder.embeddings.patch_embeddings.projection." + name.split(".")[-1]] = value
            elif name.startswith("norm."):
                out["encoder.layernorm." + name.split(".")[-1]] = value
            elif name.startswith("blocks."):
                _, i, rest = name.split(".", 2)
                layer = f"encoder.encoder.layer.{i}."
                if rest == "attn.qkv.weight":
                    q, k, v = value.chunk(3, dim=0)
                    for part, tensor in zip(("query", "key", "value"), (q, k, v), strict=True):
                        out[f"{layer}attention.attention.{part}.weight"] = tensor
                elif rest in ("attn.q_bias", "attn.v_bias"):
                    part = "query" if rest == "attn.q_bias" else "value"
                    out[f"{layer}attention.attention.{part}.bias"] = value
                else:
                    module, param = rest.rsplit(".", 1)
                    if module not in _BLOCK:
                        unused.append(key)
                        continue
                    out[f"{layer}{_BLOCK[module]}.{param}"] = value
            else:
                unused.append(key)
        elif key.startswith(HEADS):
            task, rest = key.removeprefix(HEADS).split(".", 1)
            prefix = "task_head.dpt."
            if task not in TASKS or not rest.startswith(prefix):
                unused.append(key)
                continue
            rest = rest.removeprefix(prefix)
            if rest.startswith("scratch.layer_rn."):
                aliases[key] = value
                continue
            out[f"heads.{TASKS[task]}.{rest}"] = value
        else:
            unused.append(key)
    for key, value in aliases.items():  # the alias must agree with the named conv it repeats
        task, rest = key.removeprefix(HEADS).split(".", 1)
        k = int(rest.split(".")[4])
        named = out.get(f"heads.{TASKS[task]}.scratch.layer{k + 1}_rn.weight")
        if named is None or not torch.equal(named, value):
            unused.append(key)
    return out, unused


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of an L4P checkpoint: a .safetensors file, or the Lightning .ckpt read with
    `torch.load(weights_only=True)` (no arbitrary unpickling)."""
    path = Path(path)
    if not path.is_file():
        raise InputError("no such checkpoint file", where=path)
    if path.suffix == ".safetensors":
        return read_weights(path)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # whatever the restricted unpickler refuses, the advice is the same
        raise InputError(
            f"cannot read it with weights_only=True ({str(err).splitlines()[0]}); "
            "convert it to .safetensors on a machine you trust",
            where=path,
        ) from None
    return data.get("state_dict", data)


def load_l4p(path_or_state, config: TeacherConfig | None = None) -> tuple[Teacher, list[str]]:
    """A Teacher with L4P's weights; returns (teacher, checkpoint keys that were not used).
    Every parameter of the teacher must be filled, else the error lists what is missing."""
    state = path_or_state if isinstance(path_or_state, dict) else read_checkpoint(path_or_state)
    converted, unused = convert_state_dict(state)
    teacher = Teacher(config or l4p_config())
    missing, unexpected = teacher.load_state_dict(converted, strict=False)
    if missing or unexpected:
        raise InputError(
            f"L4P weights do not fit: missing {missing[:4]} ({len(missing)}), "
            f"unexpected {unexpected[:4]} ({len(unexpected)})",
            field="state_dict",
        )
    return teacher.eval(), unused
