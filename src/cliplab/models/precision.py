"""Compute precision: what the hardware runs natively, and how a model is made to run at a precision.

On a CPU, ``torch.autocast(bfloat16)`` is slower than fp32 (every op casts its inputs again); what
pays is casting the weights once (``bf16``) or dynamic int8 quantisation of the Linear layers
(``int8``). Measured with a random open_clip ViT-B-32, batch 32, model only, on an AVX512-BF16 CPU:
fp32 16-17.6 img/s, autocast bf16 12.9, weights cast to bf16 40.0 (min cosine to fp32 0.99994),
dynamic int8 36.2 (0.99978). So:

- ``bf16`` / ``fp16``: the module and its inputs are cast; outputs are cast back to float32 and
  L2-normalised by the ``Model`` base class. fp16 needs CUDA.
- ``int8`` (CPU only): ``torch.ao.quantization.quantize_dynamic`` on every ``nn.Linear``; the
  image tower's ``nn.MultiheadAttention`` blocks are first rebuilt as :class:`ProjectedAttention`
  (the same arithmetic with ``nn.Linear`` projections) so their projections are quantised too.
- ``auto``: bf16 where the hardware runs it natively (CUDA with bf16; a CPU whose flags show
  avx512_bf16 or amx_bf16), else fp32. Detected at run time, never assumed.
"""

from __future__ import annotations

import copy
import logging
import os
import warnings
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import nn

from cliplab.errors import ModelLoadError
from cliplab.models.options import CHOICES

CAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
# CPU flags that decide which precision runs natively (as /proc/cpuinfo spells them)
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
INT8_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
FP16_FLAGS = ("avx512_fp16", "amx_fp16")
REPORTED_FLAGS = ("avx2", "avx512f", *BF16_FLAGS, *INT8_FLAGS, *FP16_FLAGS, "amx_tile")

log = logging.getLogger("cliplab.precision")


# --- what the machine has ----------------------------------------------------------------------------
@dataclass(frozen=True)
class CpuInfo:
    """The CPU's model name, usable cores and the flags among ``REPORTED_FLAGS`` it has."""

    model: str
    cores: int
    flags: frozenset[str]

    def has_any(self, names: tuple[str, ...]) -> bool:
        return any(n in self.flags for n in names)


def parse_cpuinfo(text: str) -> tuple[str, frozenset[str]]:
    """(model name, flags) from the text of ``/proc/cpuinfo`` (first processor)."""
    model, flags = "", frozenset()
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = frozenset(value.split())
    return model, flags


@lru_cache(maxsize=1)
def cpu_info() -> CpuInfo:
    """What this CPU offers, from ``/proc/cpuinfo`` where there is one, else from torch's own checks."""
    model, flags = "", frozenset()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            model, flags = parse_cpuinfo(f.read())
    except OSError:
        pass
    if not flags:  # not Linux: ask torch (it checks cpuid itself)
        checks = {
            "avx2": "_is_avx2_supported", "avx512f": "_is_avx512_supported",
            "avx512_bf16": "_is_avx512_bf16_supported", "amx_tile": "_is_amx_tile_supported",
            "amx_fp16": "_is_amx_fp16_supported", "avx512_vnni": "_is_vnni_supported",
        }  # fmt: skip
        flags = frozenset(flag for flag, fn in checks.items() if getattr(torch.cpu, fn, lambda: False)())
        if "amx_tile" in flags and "avx512_bf16" in flags:
            flags |= {"amx_bf16"}  # torch has no separate check; AMX-BF16 ships with every AMX tile CPU
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    import platform

    return CpuInfo(model or platform.processor() or "unknown CPU", cores, frozenset(flags) & set(REPORTED_FLAGS))


def native_bf16(device: torch.device) -> bool:
    """True when ``device`` runs bfloat16 arithmetic in hardware."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        return cpu_info().has_any(BF16_FLAGS)
    return False


def int8_engine() -> str | None:
    """The quantised-kernel engine torch will use for dynamic int8 on this CPU (None: none built in)."""
    engines = torch.backends.quantized.supported_engines
    for name in ("x86", "fbgemm", "qnnpack"):
        if name in engines:
            return name
    return None


def int8_supported() -> bool:
    """True when dynamic int8 can run here: a quantised engine, and on x86 a CPU with AVX2 (fbgemm's floor)."""
    import platform

    engine = int8_engine()
    if engine is None:
        return False
    if platform.machine().lower() in ("x86_64", "amd64", "i386", "i686"):
        return "avx2" in cpu_info().flags
    return True


def auto_precision(device: torch.device) -> tuple[str, str]:
    """(precision, why) that ``precision="auto"`` picks for ``device``."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        if native_bf16(device):
            return "bf16", f"{name} runs bf16 natively"
        return "fp32", f"{name} has no native bf16"
    if device.type == "cpu":
        info = cpu_info()
        have = sorted(info.flags & set(BF16_FLAGS))
        if have:
            return "bf16", f"the CPU has {', '.join(have)}"
        return "fp32", "the CPU has neither avx512_bf16 nor amx_bf16 (bf16 would be emulated, slower than fp32)"
    return "fp32", f"no reduced precision is chosen automatically on {device.type}"


def resolve_precision(precision: str, device: torch.device) -> tuple[str, str]:
    """The effective precision for ``precision`` on ``device`` and why; unknown or unsupported
    combinations raise :class:`ModelLoadError`."""
    if precision not in CHOICES:
        raise ModelLoadError(f"unknown precision {precision!r}; use one of {', '.join(CHOICES)}")
    if precision == "auto":
        chosen, why = auto_precision(device)
        log.info("precision auto -> %s: %s", chosen, why)
        return chosen, why
    if precision == "fp16" and device.type != "cuda":
        raise ModelLoadError(f"precision 'fp16' needs a CUDA device (got {device.type}); use 'bf16', 'int8' or 'fp32' there")
    if precision == "int8":
        if device.type != "cpu":
            raise ModelLoadError(f"precision 'int8' (dynamic quantisation) runs on the CPU only; on {device.type} use 'fp16' or 'bf16'")
        if not int8_supported():
            raise ModelLoadError("precision 'int8' needs int8 kernels this machine lacks (an fbgemm/x86/qnnpack engine; AVX2 on x86); use 'fp32'")
    return precision, "asked for"


# --- making a module run at a precision ------------------------------------------------------------
def input_dtype(precision: str) -> torch.dtype:
    """The dtype image pixels must have for a module prepared at ``precision``."""
    return CAST_DTYPES.get(precision, torch.float32)


def prepare_module(module: nn.Module, precision: str, device: torch.device) -> nn.Module:
    """``module`` (fp32, eval mode, on ``device``) made to run at ``precision``: cast or quantised.

    A cast changes the module in place; int8 returns a quantised copy. On the CPU the attention
    blocks of a cast module become :class:`ProjectedAttention` (one fused projection and
    ``scaled_dot_product_attention``: faster than ``nn.MultiheadAttention``'s bf16 path there).
    """
    if precision in CAST_DTYPES:
        if device.type == "cpu":
            replace_attention(module)
        return module.to(CAST_DTYPES[precision])
    if precision == "int8":
        return quantize_int8(module)
    return module


def quantize_int8(module: nn.Module) -> nn.Module:
    """A copy of ``module`` with every ``nn.Linear`` dynamically quantised to int8.

    Weights are quantised once (per tensor, symmetric), activations per batch at run time (Jacob et
    al. 2018, "Quantization and Training of Neural Networks for Efficient Integer-Arithmetic-Only
    Inference", eq. 1: r = S(q - Z)); matmuls accumulate in int32. In an open_clip model the image
    tower's attention is first rebuilt with Linear projections, so they are quantised too; the text
    tower keeps float attention projections (quantising them moved a random ViT-B-32's text
    embeddings to cosine 0.9984 of fp32, against 0.9992 without).
    """
    engine = int8_engine()
    if engine is not None and torch.backends.quantized.engine != engine:
        torch.backends.quantized.engine = engine
    module = copy.deepcopy(module)
    visual = getattr(module, "visual", None)
    if isinstance(visual, nn.Module):
        replace_attention(visual)
    with warnings.catch_warnings():
        # torch 2.14 marks eager-mode quantisation deprecated in favour of torchao (not a dependency);
        # it still works, and a user of cliplab can do nothing about the notice
        warnings.filterwarnings("ignore", message=r"torch\.ao\.quantization is deprecated")
        warnings.filterwarnings("ignore", message=r"torch\.quantize_per_tensor")
        qconfig = torch.ao.quantization.default_dynamic_qconfig
        targets = {name: qconfig for name in quantizable_linears(module)}
        quantized = torch.ao.quantization.quantize_dynamic(module, targets, dtype=torch.qint8)
    for sub in quantized.modules():
        # open_clip asks its blocks for their weight dtype through mlp.c_fc.weight, which a
        # quantised Linear no longer has; this attribute is the answer it reads first.
        c_fc = getattr(getattr(sub, "mlp", None), "c_fc", None)
        if c_fc is not None and not isinstance(getattr(c_fc, "weight", None), torch.Tensor):
            c_fc.int8_original_dtype = torch.float32
    return quantized


def quantizable_linears(module: nn.Module) -> list[str]:
    """Names of the ``nn.Linear`` layers inside ``module`` that are called as layers.

    Left out: those whose parent hands their ``.weight`` to a functional op instead of calling
    them (open_clip's ``AttentionPool2d`` in ResNet towers); a quantised Linear has no such tensor.
    """
    readers = _weight_readers()
    names = []
    for parent_name, parent in module.named_modules():
        if isinstance(parent, readers):
            continue
        for name, child in parent.named_children():
            if type(child) is nn.Linear:
                names.append(f"{parent_name}.{name}" if parent_name else name)
    return names


def _weight_readers() -> tuple[type, ...]:
    try:
        from open_clip.modified_resnet import AttentionPool2d
    except ImportError:  # pragma: no cover - open_clip is a dependency
        return ()
    return (AttentionPool2d,)


class ProjectedAttention(nn.Module):
    """``nn.MultiheadAttention`` (inference) with its input and output projections as ``nn.Linear``.

    The same arithmetic (Vaswani et al. 2017, eq. 1 and the multi-head equations of section 3.2.2):
    ``softmax(Q K^T / sqrt(d_head) + mask) V`` per head, then the output projection; but with the
    projections as Linear layers that dynamic quantisation can reach (``nn.MultiheadAttention``
    holds its input projection as a bare parameter). Built only from attention modules without
    ``bias_k``/``bias_v``/``add_zero_attn`` and with equal query/key/value sizes.
    """

    def __init__(self, mha: nn.MultiheadAttention):
        super().__init__()
        d = mha.embed_dim
        self.num_heads = mha.num_heads
        self.batch_first = mha.batch_first
        self.in_proj = nn.Linear(d, 3 * d, bias=mha.in_proj_bias is not None)
        self.out_proj = nn.Linear(d, d, bias=mha.out_proj.bias is not None)
        with torch.no_grad():
            self.in_proj.weight.copy_(mha.in_proj_weight)
            self.out_proj.weight.copy_(mha.out_proj.weight)
            if mha.in_proj_bias is not None:
                self.in_proj.bias.copy_(mha.in_proj_bias)
            if mha.out_proj.bias is not None:
                self.out_proj.bias.copy_(mha.out_proj.bias)

    @staticmethod
    def can_replace(mha: nn.Module) -> bool:
        return (
            type(mha) is nn.MultiheadAttention
            and mha._qkv_same_embed_dim
            and mha.bias_k is None
            and mha.bias_v is None
            and not mha.add_zero_attn
        )

    def forward(self, query, key, value, key_padding_mask=None, need_weights=False, attn_mask=None,
                average_attn_weights=True, is_causal=False):  # fmt: skip
        if need_weights:
            raise NotImplementedError("ProjectedAttention is for inference without attention weights")
        if not self.batch_first:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        d = query.shape[-1]
        if key is query and value is query:
            q, k, v = self.in_proj(query).split(d, dim=-1)
        else:  # cross attention: project each input, keep its third of the output
            q = self.in_proj(query)[..., :d]
            k = self.in_proj(key)[..., d : 2 * d]
            v = self.in_proj(value)[..., 2 * d :]
        n, lq, h = q.shape[0], q.shape[1], self.num_heads
        q, k, v = (t.reshape(n, t.shape[1], h, d // h).transpose(1, 2) for t in (q, k, v))
        mask = _additive_mask(attn_mask, key_padding_mask, q.dtype, h)
        out = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal and mask is None)
        out = self.out_proj(out.transpose(1, 2).reshape(n, lq, d))
        if not self.batch_first:
            out = out.transpose(0, 1)
        return out, None


def _additive_mask(attn_mask, key_padding_mask, dtype, heads: int):
    """``nn.MultiheadAttention``'s masks (bool: True = masked out; float: added to the scores) as one
    float mask broadcastable to (N, heads, Lq, Lk), or None."""

    def additive(m: torch.Tensor) -> torch.Tensor:
        if m.dtype == torch.bool:
            return torch.zeros(m.shape, dtype=dtype, device=m.device).masked_fill(m, float("-inf"))
        return m.to(dtype)

    mask = None
    if attn_mask is not None:  # (Lq, Lk), or (N*heads, Lq, Lk) -> (N, heads, Lq, Lk)
        mask = additive(attn_mask)
        if mask.dim() == 3:
            mask = mask.reshape(-1, heads, *mask.shape[1:])
    if key_padding_mask is not None:  # (N, Lk) -> (N, 1, 1, Lk)
        padding = additive(key_padding_mask)[:, None, None, :]
        mask = padding if mask is None else mask + padding
    return mask


def replace_attention(module: nn.Module) -> int:
    """Swap every replaceable ``nn.MultiheadAttention`` inside ``module`` for a
    :class:`ProjectedAttention`; returns how many were swapped."""
    swapped = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if ProjectedAttention.can_replace(child):
                setattr(parent, name, ProjectedAttention(child).to(child.out_proj.weight.device))
                swapped += 1
    return swapped
