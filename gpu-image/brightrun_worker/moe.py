"""Grouped routed experts for Qwen3-Next MoE blocks (transformers 4.57).

transformers' ``Qwen3NextSparseMoeBlock.forward`` loops in Python over every
hit expert, with host syncs (``nonzero``, ``torch.where``): 48 layers x 512
experts is ~24,576 expert calls per micro-batch for the 80B model, whatever
the micro-batch's size. ``apply_grouped_moe(model)`` replaces that forward, in
place, by one that runs all the routed experts of a block as a few grouped
matmuls, with no Python loop over experts in forward or backward.

Invariants (the tests in tests/test_moe_grouped.py check each one):

- Same maths as transformers: the router ``gate`` (an unquantized
  nn.Linear), ``softmax(dim=1, dtype=float)``, ``topk``, the ``norm_topk_prob``
  division (the same in-place op, so the router's gradient is the same
  expression), routing weights cast to the hidden dtype; the shared expert,
  its sigmoid ``shared_expert_gate`` and any LoRA on them are the modules
  themselves, called as before. The block still returns
  ``(final_hidden_states, router_logits)``.
- Routed experts are frozen (LoRA never targets them): no weight gradient is
  computed for them, and ``apply_grouped_moe`` sets their ``requires_grad``
  to False.
- Each block's expert weights are restacked once, at apply time, into one
  gate+up stack [E, 2I, H] and one down stack [E, H, I]. Every expert's own
  parameter becomes a view into the stack, so ``state_dict`` and saving see
  the same tensors and no weight memory is duplicated. NF4 experts
  (bitsandbytes ``Linear4bit``, nf4 or fp4, with or without double quant)
  are stacked packed: the 4-bit data, the absmax and the nested state
  (state2 absmax, offset, code) of each expert are concatenated, and the
  experts' ``Params4bit`` data and quant-state tensors become views too.
- The grouped forward's operator count does not depend on the number of
  experts; it makes no ``.item()``, ``.tolist()``, ``nonzero`` or boolean
  indexing, except the one documented host read in the padded-bmm fallback
  of ``grouped_mm``.

How a block runs: tokens are sorted by expert (a stable sort of the
flattened top-k ids); the group ends come from ``searchsorted`` on the
sorted ids (``torch.bincount`` is avoided because on CUDA it reads the max
id back to the host to size its output); ``grouped_mm`` runs gate+up, then
``act_fn(gate) * up``, then down; rows are scaled by their routing weight
and added back per token with one fp32 ``index_add_``.

``grouped_mm(x_sorted, w, offs)`` is the one primitive; everything else is
the same code on every device. Two implementations:

- ``torch._grouped_mm(mat_a, mat_b, offs=None, bias=None, out_dtype=None)``
  (torch 2.8 schema) on CUDA with compute capability 9.x or 10.x (torch 2.8
  builds its CUTLASS bf16 grouped GEMM for sm90/sm100 only): one kernel for
  all experts. ``mat_a`` is x_sorted [M, K], ``mat_b`` is
  ``w.transpose(-2, -1)`` ([E, K, N], column-major, no copy), ``offs`` the
  int32 cumulative group ends. ``grouped_mm_layout_ok`` checks what torch
  checks (bf16, 2-D x 3-D, row- or column-major with 16-byte leading
  strides) and 16-byte base pointers; a refusal we did not foresee logs once
  and switches to:
- a padded bmm everywhere else (CPU, A100, fp32): scatter the sorted rows
  into a zeroed [E, C, K] buffer where C is the largest group, one
  ``torch.bmm`` with the stack, gather the rows back. Its costs: one host
  read of the largest group's size per call (the only sync of the grouped
  path; free on the CPU; on a GPU 2 per forward and 2 per backward of a
  layer, where the loop syncs once per hit expert), a
  buffer of E*C*K elements and E*C*K*N multiply-adds, i.e. max/mean group
  size times the useful work (about 2-3x under uneven routing). Other
  loop-free forms are worse: gathering one weight matrix per row costs
  T*k*N*K memory, a block-diagonal matmul E times the work.

The autograd Function ``_RoutedExperts`` owns the routed part. Forward saves
the gate+up outputs [T*k, 2I] and the routing tensors, never a weight stack:
backward dequantizes again and computes only the gradients w.r.t. the hidden
states and the routing weights (d w_j = <dz_j, h_j> with dz = dout @ W_down,
so no expert output is kept). Saving gate+up rather than recomputing it
from x spares backward one of its three grouped matmuls (40% of its expert
FLOPs) for T*k*2I activations (84 MB per layer at 4096 tokens for the 80B,
less than the loop keeps: each expert's input, gate, up, product, output).

NF4 stacks are dequantized per layer with one
``bitsandbytes.functional.dequantize_4bit`` call per stack, after the nested
absmax of the whole stack is dequantized with a few torch ops that give
exactly bitsandbytes' values (per-expert nested blocks of 256 need not align
across experts: each expert keeps its own row of nested scales). Peak
transient memory is the larger stack (gate+up: 2.1 GB per layer at the
80B's sizes); forward frees it before dequantizing down. On the CPU,
bitsandbytes' dequantize_4bit is a pure-torch fallback with 4-byte
intermediates: one call over a whole layer runs out of cache and is ~4x
slower than many small calls (scripts/bench_moe.py --nf4); on CUDA it is one
kernel, which is the point.

Apply after the model has its final device and dtype. If an expert's
parameters are replaced later (``.to()``, a dtype cast), the block restacks
on its next forward; if the experts stop being plain nn.Linear / Linear4bit
(e.g. LoRA wrapped them), the block runs transformers' loop again. Works
under non-reentrant gradient checkpointing: the forward is deterministic.
"""

from __future__ import annotations

import logging
import types
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

log = logging.getLogger(__name__)

_ATTR = "_brightrun_grouped_experts"
# Leading strides and base pointers that torch._grouped_mm accepts (16 bytes).
_ALIGN_BYTES = 16
_torch_grouped_mm_enabled = hasattr(torch, "_grouped_mm")


# -- the primitive ------------------------------------------------------------


def grouped_mm(x_sorted: Tensor, w: Tensor, offs: Tensor) -> Tensor:
    """Rows of group g of ``x_sorted`` [M, K] times ``w[g].T`` ([E, N, K], any
    strides), group g being rows ``offs[g-1]:offs[g]`` (int32 cumulative
    ends, ``offs[-1] == M``, empty groups allowed). Returns [M, N]."""
    global _torch_grouped_mm_enabled
    if _torch_grouped_mm_enabled and _fits_torch_grouped_mm(x_sorted, w):
        try:
            return torch._grouped_mm(x_sorted, w.transpose(-2, -1), offs=offs)
        except torch.OutOfMemoryError:
            raise
        except RuntimeError as e:  # a check of this torch build we did not foresee
            _torch_grouped_mm_enabled = False
            log.warning("torch._grouped_mm refused %s x %s (%s); using the padded bmm from now on",
                        tuple(x_sorted.shape), tuple(w.shape), str(e).splitlines()[0][:200])
    return padded_bmm(x_sorted, w, offs)


def grouped_mm_backend(x_sorted: Tensor, w: Tensor) -> str:
    """Which implementation ``grouped_mm`` uses for these operands now."""
    if _torch_grouped_mm_enabled and _fits_torch_grouped_mm(x_sorted, w):
        return "torch._grouped_mm"
    return "padded bmm"


def padded_bmm(x_sorted: Tensor, w: Tensor, offs: Tensor) -> Tensor:
    """``grouped_mm`` as one bmm over a [E, C, K] buffer, C the largest group."""
    m, k = x_sorted.shape
    e, n, _ = w.shape
    ends = offs.long()
    starts = torch.cat([ends.new_zeros(1), ends[:-1]])
    # The one host read of the grouped path: the buffer's size.
    c = int((ends - starts).max()) if m else 0
    if c == 0:
        return x_sorted.new_zeros(m, n)
    rows = torch.arange(m, device=x_sorted.device)
    group = torch.searchsorted(ends, rows, right=True)
    slot = group * c + rows - starts.index_select(0, group)
    buf = x_sorted.new_zeros(e * c, k).index_copy_(0, slot, x_sorted)
    out = torch.bmm(buf.view(e, c, k), w.transpose(1, 2))
    return out.view(e * c, n).index_select(0, slot)


def _fits_torch_grouped_mm(x: Tensor, w: Tensor) -> bool:
    if not (x.is_cuda and w.device == x.device):
        return False
    index = x.device.index if x.device.index is not None else torch.cuda.current_device()
    return _cuda_supports_grouped_mm(index) and grouped_mm_layout_ok(x, w)


def grouped_mm_layout_ok(x: Tensor, w: Tensor) -> bool:
    """What torch 2.8's _grouped_mm checks (aten/src/ATen/native/cuda/Blas.cpp,
    mirrored by its meta kernel in torch/_meta_registrations.py): bf16
    operands, a 2-D ``mat_a`` and 3-D ``mat_b`` (offsets needed), each row-
    or column-major with a leading stride of a multiple of 16 bytes; we also
    ask for 16-byte aligned base pointers and batch stride (CUTLASS's TMA)."""
    if x.dtype != torch.bfloat16 or w.dtype != torch.bfloat16:
        return False
    if x.dim() != 2 or w.dim() != 3 or x.shape[0] == 0:
        return False
    return _aligned(x) and _aligned(w.transpose(-2, -1))


_capability_ok: dict[int, bool] = {}


def _cuda_supports_grouped_mm(index: int) -> bool:
    # torch 2.8 builds its bf16 grouped GEMM for sm90 and sm100 only.
    if index not in _capability_ok:
        _capability_ok[index] = torch.cuda.get_device_capability(index)[0] in (9, 10)
    return _capability_ok[index]


def _aligned(m: Tensor) -> bool:
    """Row- or column-major in the last two dims, leading strides and base
    pointer multiples of 16 bytes (torch's _grouped_mm stride checks)."""
    per = _ALIGN_BYTES // m.element_size()
    s_row, s_col = m.stride(-2), m.stride(-1)
    rows, cols = m.shape[-2], m.shape[-1]
    if s_col == 1 and s_row >= max(1, cols):
        lead = s_row
    elif s_row == 1 and s_col >= max(1, rows):
        lead = s_col
    else:
        return False
    batch_ok = m.dim() == 2 or m.stride(0) % per == 0
    return lead % per == 0 and batch_ok and m.data_ptr() % _ALIGN_BYTES == 0


# -- stacked expert weights ---------------------------------------------------


class _Unsupported(Exception):
    """A block whose experts cannot be stacked; it keeps transformers' loop."""


@dataclass
class _Packed4bit:
    """Packed 4-bit weights of U same-shaped matrices [N, K], back to back.

    ``data`` is the concatenated Params4bit storage; ``absmax`` holds U*nb
    fp32 scales, or (double quant) U*nb uint8 codes with ``absmax2`` [U, n2]
    (per-matrix nested blocks of ``blocksize2``), ``offset`` [U] and one
    ``code`` [256].
    """

    data: Tensor
    absmax: Tensor
    units: int
    shape: tuple[int, int]
    blocksize: int
    quant_type: str
    dtype: torch.dtype
    absmax2: Optional[Tensor] = None
    offset: Optional[Tensor] = None
    code: Optional[Tensor] = None
    blocksize2: int = 0

    def scales(self) -> Tensor:
        """The fp32 absmax of every 4-bit block, exactly as bitsandbytes'
        ``dequantize_4bit`` computes it for each matrix."""
        if self.absmax2 is None:
            return self.absmax
        u, n2 = self.absmax2.shape
        nb = self.absmax.numel() // u
        vals = self.code[self.absmax.view(u, nb).int()]
        per_block = self.absmax2[:, :, None].expand(u, n2, self.blocksize2).reshape(u, n2 * self.blocksize2)
        return (vals * per_block[:, :nb] + self.offset[:, None]).reshape(-1)

    def dequantize(self) -> Tensor:
        """[U*N, K] in the quantized dtype: one bitsandbytes call."""
        import bitsandbytes.functional as bnbf

        n, k = self.shape
        state = bnbf.QuantState(
            absmax=self.scales(),
            shape=torch.Size((self.units * n, k)),
            blocksize=self.blocksize,
            quant_type=self.quant_type,
            dtype=self.dtype,
        )
        return bnbf.dequantize_4bit(self.data, state)


def _pack4bit(params: list[Any]) -> _Packed4bit:
    """Concatenate Params4bit matrices and turn each into views of the stack."""
    first = params[0]
    qs0 = first.quant_state
    if qs0 is None or not getattr(first, "bnb_quantized", True):
        raise _Unsupported("4-bit expert weights are not quantized yet")
    shape = tuple(qs0.shape)
    if len(shape) != 2 or (shape[0] * shape[1]) % qs0.blocksize != 0:
        raise _Unsupported(f"expert shape {shape} is not a whole number of {qs0.blocksize}-element blocks")
    nested = qs0.nested
    for p in params:
        qs = p.quant_state
        if (
            qs is None
            or tuple(qs.shape) != shape
            or qs.blocksize != qs0.blocksize
            or qs.quant_type != qs0.quant_type
            or qs.dtype != qs0.dtype
            or qs.nested != nested
            or p.data.dtype != first.data.dtype
            or p.data.shape != first.data.shape
            or p.device != first.device
        ):
            raise _Unsupported("the experts' 4-bit states differ")
        if nested and (
            qs.state2.blocksize != qs0.state2.blocksize
            or qs.state2.absmax.shape != qs0.state2.absmax.shape
            or not torch.equal(qs.state2.code, qs0.state2.code)
        ):
            raise _Unsupported("the experts' nested 4-bit states differ")
    u = len(params)
    data = torch.cat([p.data.reshape(-1) for p in params]).view(u * first.data.shape[0], *first.data.shape[1:])
    absmax = torch.cat([p.quant_state.absmax.reshape(-1) for p in params])
    packed = _Packed4bit(
        data=data,
        absmax=absmax,
        units=u,
        shape=shape,  # type: ignore[arg-type]
        blocksize=qs0.blocksize,
        quant_type=qs0.quant_type,
        dtype=qs0.dtype,
    )
    if nested:
        packed.absmax2 = torch.stack([p.quant_state.state2.absmax.reshape(-1) for p in params])
        packed.offset = torch.stack([p.quant_state.offset.reshape(()) for p in params]).float()
        packed.code = qs0.state2.code
        packed.blocksize2 = qs0.state2.blocksize
    rows, nb = first.data.shape[0], qs0.absmax.numel()
    for i, p in enumerate(params):
        qs = p.quant_state
        p.data = data[i * rows : (i + 1) * rows]
        qs.absmax = absmax[i * nb : (i + 1) * nb]
        if nested:
            qs.state2.absmax = packed.absmax2[i]
            qs.offset = packed.offset[i]
            qs.state2.code = packed.code
    return packed


@dataclass
class _ExpertStack:
    """One block's routed experts: a gate+up and a down stack, dense or 4-bit."""

    num_experts: int
    hidden: int
    inter: int
    act_fn: Callable[[Tensor], Tensor]
    compute_dtype: Optional[torch.dtype]  # None: the hidden states' dtype
    anchors: tuple[tuple[nn.Module, int], ...]  # (module, weight data_ptr) to detect replacement
    gate_up_dense: Optional[Tensor] = None  # [E, 2I, H]
    down_dense: Optional[Tensor] = None  # [E, H, I]
    gate_up_4bit: Optional[_Packed4bit] = None  # units g0, u0, g1, u1, ...
    down_4bit: Optional[_Packed4bit] = None

    def gate_up(self, dtype: torch.dtype) -> Tensor:
        if self.gate_up_dense is not None:
            return self.gate_up_dense.to(dtype)
        assert self.gate_up_4bit is not None
        return self.gate_up_4bit.dequantize().view(self.num_experts, 2 * self.inter, self.hidden).to(dtype)

    def down(self, dtype: torch.dtype) -> Tensor:
        if self.down_dense is not None:
            return self.down_dense.to(dtype)
        assert self.down_4bit is not None
        return self.down_4bit.dequantize().view(self.num_experts, self.hidden, self.inter).to(dtype)

    def is_current(self, block: nn.Module) -> bool:
        """False once the first or last expert's layers were replaced or
        their weights moved (``.to()``, a dtype cast): then restack."""
        experts = block.experts
        first, last = experts[0], experts[len(experts) - 1]
        now = (first.gate_proj, first.up_proj, first.down_proj, last.gate_proj, last.up_proj, last.down_proj)
        return all(m is a and m.weight.data_ptr() == ptr for m, (a, ptr) in zip(now, self.anchors))


def _linear4bit_class() -> Optional[type]:
    try:
        from bitsandbytes.nn import Linear4bit
    except ImportError:
        return None
    return Linear4bit


def _stack_experts(block: nn.Module) -> _ExpertStack:
    experts = list(block.experts)
    if not experts:
        raise _Unsupported("no experts")
    layers = [layer for m in experts for layer in (m.gate_proj, m.up_proj, m.down_proj)]
    linear4 = _linear4bit_class()
    if linear4 is not None and all(isinstance(layer, linear4) for layer in layers):
        kind = "4bit"
    elif all(type(layer) is nn.Linear for layer in layers):
        kind = "dense"
    else:
        raise _Unsupported("routed experts are not all nn.Linear or all bitsandbytes Linear4bit (LoRA on them?)")
    if any(layer.bias is not None for layer in layers):
        raise _Unsupported("routed experts with a bias")
    if any(layer.weight.device.type == "meta" for layer in layers):
        raise _Unsupported("routed experts on the meta device (offloaded)")
    inter, hidden = experts[0].gate_proj.out_features, experts[0].gate_proj.in_features
    for m in experts:
        if (m.gate_proj.out_features, m.gate_proj.in_features) != (inter, hidden) or (
            m.up_proj.out_features,
            m.up_proj.in_features,
            m.down_proj.out_features,
            m.down_proj.in_features,
        ) != (inter, hidden, hidden, inter):
            raise _Unsupported("routed experts of different sizes")
    num = len(experts)
    stack = _ExpertStack(
        num_experts=num,
        hidden=hidden,
        inter=inter,
        act_fn=experts[0].act_fn,
        compute_dtype=getattr(experts[0].gate_proj, "compute_dtype", None) if kind == "4bit" else None,
        anchors=(),
    )
    with torch.no_grad():
        if kind == "4bit":
            stack.gate_up_4bit = _pack4bit([p for m in experts for p in (m.gate_proj.weight, m.up_proj.weight)])
            stack.down_4bit = _pack4bit([m.down_proj.weight for m in experts])
        else:
            w0 = experts[0].gate_proj.weight
            if any(layer.weight.dtype != w0.dtype or layer.weight.device != w0.device for layer in layers):
                raise _Unsupported("routed experts of mixed dtypes or devices")
            gate_up = torch.empty(num, 2 * inter, hidden, dtype=w0.dtype, device=w0.device)
            down = torch.empty(num, hidden, inter, dtype=w0.dtype, device=w0.device)
            for e, m in enumerate(experts):
                gate_up[e, :inter].copy_(m.gate_proj.weight)
                gate_up[e, inter:].copy_(m.up_proj.weight)
                down[e].copy_(m.down_proj.weight)
                m.gate_proj.weight.data = gate_up[e, :inter]
                m.up_proj.weight.data = gate_up[e, inter:]
                m.down_proj.weight.data = down[e]
            stack.gate_up_dense, stack.down_dense = gate_up, down
    for layer in layers:
        layer.weight.requires_grad_(False)
    first, last = experts[0], experts[-1]
    stack.anchors = tuple(
        (layer, layer.weight.data_ptr())
        for layer in (first.gate_proj, first.up_proj, first.down_proj, last.gate_proj, last.up_proj, last.down_proj)
    )
    return stack


# -- the routed part: one autograd Function -----------------------------------


class _RoutedExperts(torch.autograd.Function):
    """sum_j w_j * down_e(act(gate_e(x_t)) * up_e(x_t)) over each token's
    top-k (e, w_j), for tokens sorted by expert.

    Saves the gate+up outputs and the routing tensors, never the
    (dequantized) weight stacks; gradients flow to the hidden states and the
    routing weights only (the experts are frozen).
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, x: Tensor, weights: Tensor, token: Tensor, offs: Tensor, stack: _ExpertStack
    ) -> Tensor:
        dt = x.dtype
        cdt = stack.compute_dtype or dt
        w = stack.gate_up(cdt)
        gate_up = grouped_mm(x.index_select(0, token).to(cdt), w, offs).to(dt)
        del w
        gate, up = gate_up.chunk(2, dim=-1)
        h = stack.act_fn(gate) * up
        w = stack.down(cdt)
        y = grouped_mm(h.to(cdt), w, offs).to(dt)
        del w
        out = torch.zeros(x.shape[0], stack.hidden, dtype=torch.float32, device=x.device)
        out.index_add_(0, token, (y * weights[:, None]).float())
        ctx.save_for_backward(gate_up, weights, token, offs)
        ctx.stack = stack
        return out.to(dt)

    @staticmethod
    def backward(ctx: Any, dout: Tensor) -> tuple[Optional[Tensor], ...]:  # type: ignore[override]
        gate_up, weights, token, offs = ctx.saved_tensors
        stack: _ExpertStack = ctx.stack
        need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        dt = gate_up.dtype
        cdt = stack.compute_dtype or dt
        d_rows = dout.index_select(0, token)
        w = stack.down(cdt)
        dz = grouped_mm(d_rows.to(cdt), w.transpose(1, 2), offs).to(dt)  # dout @ W_down, [T*k, I]
        del w
        with torch.enable_grad():
            gate, up = (t.detach().requires_grad_() for t in gate_up.chunk(2, dim=-1))
            h = stack.act_fn(gate) * up
        d_weights = (dz.float() * h.detach().float()).sum(-1).to(weights.dtype) if need_w else None
        dx = None
        if need_x:
            d_gate, d_up = torch.autograd.grad(h, (gate, up), dz * weights[:, None])
            w = stack.gate_up(cdt)
            dx_rows = grouped_mm(torch.cat([d_gate, d_up], dim=-1).to(cdt), w.transpose(1, 2), offs)
            del w
            dx = torch.zeros(dout.shape[0], stack.hidden, dtype=torch.float32, device=dout.device)
            dx = dx.index_add_(0, token, dx_rows.float()).to(dout.dtype)
        return dx, d_weights, None, None, None


def routed_experts(x: Tensor, routing_weights: Tensor, selected: Tensor, stack: _ExpertStack) -> Tensor:
    """The routed experts' sum for every token of ``x`` [T, H], fp32-accumulated."""
    top_k = selected.shape[-1]
    sorted_ids, order = torch.sort(selected.reshape(-1), stable=True)
    experts = torch.arange(stack.num_experts, device=x.device, dtype=sorted_ids.dtype)
    offs = torch.searchsorted(sorted_ids, experts, right=True, out_int32=True)
    token = torch.div(order, top_k, rounding_mode="floor")
    weights = routing_weights.reshape(-1).index_select(0, order)
    return _RoutedExperts.apply(x, weights, token, offs, stack)


# -- the block ----------------------------------------------------------------


def _loop_forward(block: nn.Module, hidden_states: Tensor) -> tuple[Tensor, Tensor]:
    return type(block).forward(block, hidden_states)


def _grouped_forward(self: nn.Module, hidden_states: Tensor) -> tuple[Tensor, Tensor]:
    stack = getattr(self, _ATTR, None)
    if stack is not None and not stack.is_current(self):
        stack = _restack(self)
    if stack is None:
        return _loop_forward(self, hidden_states)
    batch_size, sequence_length, hidden_dim = hidden_states.shape
    x = hidden_states.view(-1, hidden_dim)
    router_logits = self.gate(x)
    routing_weights = F.softmax(router_logits, dim=1, dtype=torch.float)
    routing_weights, selected = torch.topk(routing_weights, self.top_k, dim=-1)
    if self.norm_topk_prob:
        routing_weights /= routing_weights.sum(dim=-1, keepdim=True)
    routing_weights = routing_weights.to(x.dtype)
    routed = routed_experts(x, routing_weights, selected, stack)
    shared = self.shared_expert(x)
    shared = F.sigmoid(self.shared_expert_gate(x)) * shared
    out = routed + shared
    return out.reshape(batch_size, sequence_length, hidden_dim), router_logits


def _restack(block: nn.Module) -> Optional[_ExpertStack]:
    """Stack the block's experts, or record None (the loop runs) and say why once."""
    try:
        stack: Optional[_ExpertStack] = _stack_experts(block)
    except _Unsupported as e:
        log.warning("MoE block keeps transformers' per-expert loop: %s", e)
        stack = None
    setattr(block, _ATTR, stack)
    return stack


def _moe_block_class() -> type:
    from transformers.models.qwen3_next.modeling_qwen3_next import Qwen3NextSparseMoeBlock

    return Qwen3NextSparseMoeBlock


def apply_grouped_moe(model: nn.Module) -> int:
    """Make every Qwen3NextSparseMoeBlock of ``model`` (plain or peft-wrapped,
    dense or NF4 experts) run its routed experts grouped. Returns how many
    blocks run grouped after the call; applying twice changes nothing."""
    cls = _moe_block_class()
    grouped = 0
    for block in model.modules():
        if not isinstance(block, cls):
            continue
        if getattr(block, _ATTR, None) is None and _restack(block) is None:
            continue
        bound = types.MethodType(_grouped_forward, block)
        if hasattr(block, "_hf_hook") and hasattr(block, "_old_forward"):
            block._old_forward = bound  # accelerate's hook calls _old_forward
        else:
            block.forward = bound
        grouped += 1
    return grouped
