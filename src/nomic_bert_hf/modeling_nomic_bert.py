"""NomicBERT: a post-LayerNorm BERT encoder with rotary embeddings and SwiGLU, as in nomic-bert-2048 and nomic-embed-text.

This file is shipped next to the weights as remote code: it imports only torch and transformers.

Parameter names are those of Nomic's published checkpoints (`emb_ln`, `encoder.layers.N.attn.Wqkv`, `mlp.fc11`, ...),
so their safetensors load without renaming.

A batch takes one of two routes through the encoder, with the same results (fp32, within 1e-5):

* Eager calls run on the real tokens only (`PackedSequences`). A padded batch is packed into one `[tokens, hidden]`
  matrix for the linear layers, and attention runs within each sequence (`packed_attention_kernel` chooses): flash
  attention's variable-length call when the model runs with a flash `attn_implementation`; one batched call when the
  lengths are equal; otherwise PyTorch's variable-length flash attention (`varlen_attn`: CUDA sm80+, half precision),
  one masked call over the re-padded sequences on other accelerators and dtypes, and one mask-free call per sequence
  on CPU (the fastest CPU kernel), where sequences also go through the encoder in groups of about
  `cpu_working_tokens` tokens. A text's output does not depend on what it is batched with.
* Under `torch.compile`, `torch.export` (and so `torch.onnx.export(dynamo=True)`) and `torch.jit.trace`, and when
  hidden states or attention weights are recorded, the padded batch runs as it is with a key-padding mask
  (`PaddedBatch`): no host synchronisation and no data-dependent Python branch, so one graph serves every batch size,
  length and mask.

Positions restart at the first real token of each sequence, so left and right padding give the same result, unless
`position_ids` are passed. With dynamic NTK scaling, each sequence's RoPE base comes from its own length (its largest
position + 1), not the padded length of its batch, and nothing is cached between calls. Both differ from Nomic's code
and transformers' native class, which scale by the longest sequence seen; the results agree wherever a sequence runs
alone or every sequence is at most `max_trained_positions` long.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import (
    BaseModelOutputWithPooling,
    MaskedLMOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.processing_utils import Unpack
from transformers.utils import TransformersKwargs
from transformers.utils.generic import can_return_tuple
from transformers.utils.output_capturing import capture_outputs

from .configuration_nomic_bert import GATED_ACTIVATIONS, NomicBertConfig

# On CPU the packed route works on at most about this many tokens at a time: sequences are grouped up to it for the
# whole encoder, and a longer sequence's MLP goes through in slices of it. Intermediates of that size are reused by
# the allocator and stay in cache, where whole-batch ones are mapped afresh and faulted in on every call, which made a
# batch slower than its texts one at a time (BENCHMARKS.md, "Batched against one at a time"). In bf16, oneDNN's AMX
# matmuls of 768 to 1280 rows into a 768-wide output ran at half the rate of 1536 rows (BENCHMARKS.md, "bf16 on CPU").
CPU_WORKING_TOKENS = {torch.float32: 1024, torch.bfloat16: 1536}


def cpu_working_tokens(dtype: torch.dtype) -> int:
    return CPU_WORKING_TOKENS.get(dtype, CPU_WORKING_TOKENS[torch.float32])

try:  # PyTorch's own variable-length flash attention (torch >= 2.9; runs on CUDA)
    from torch.nn.attention.varlen import varlen_attn
except ImportError:
    varlen_attn = None


def runs_padded() -> bool:
    """Whether the forward is being traced for a graph (compile, export, ONNX, jit), which must not depend on data."""
    return torch.compiler.is_compiling() or torch.jit.is_tracing()


def rotary_inv_freq(config: NomicBertConfig, lengths: torch.Tensor) -> torch.Tensor:
    """Inverse frequencies `(*lengths.shape, rotary_dim / 2)` for sequences of `lengths` tokens, with dynamic NTK
    scaling above the trained length.

    Computed with the same floating-point operations as transformers' native dynamic RoPE, so the tables agree
    bit for bit; tensor operations only, so it traces for any lengths. Not `ROPE_INIT_FUNCTIONS["dynamic"]` itself:
    that gives one table for one length, where each sequence of a batch needs its own (a padded batch then equals
    its texts run alone).
    """
    dim = int(config.head_dim * config.rotary_emb_fraction)
    exponents = torch.arange(0, dim, 2, dtype=torch.int64, device=lengths.device).float() / dim
    inv_freq = (1.0 / (config.rotary_emb_base**exponents)).expand(*lengths.shape, -1)
    alpha = config.rotary_scaling_factor
    if not alpha:
        return inv_freq
    scale = alpha * lengths.clamp(min=config.max_trained_positions) / config.max_trained_positions - (alpha - 1)
    base = config.rotary_emb_base * scale ** (dim / (dim - 2))
    scaled = 1.0 / (base[..., None] ** exponents)
    return torch.where((lengths > config.max_trained_positions)[..., None], scaled, inv_freq)


def rotary_cos_sin(positions: torch.Tensor, inv_freq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """fp32 `(cos, sin)` of shape `(*positions.shape, rotary_dim / 2)`; `inv_freq` holds each position's
    frequencies (the two halves of a head share them)."""
    angles = positions[..., None].float() * inv_freq
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the first `rotary_dim` features of each head (GPT-NeoX half split: feature i pairs with i + rotary_dim
    / 2), computing in fp32. x: `(..., [query/key,] heads, head_dim)`; cos, sin: `(..., rotary_dim / 2)`.

    Each half in one multiply and one fused multiply-add read straight from `x`'s dtype, with no rotated copy of `x`:
    in bf16 the rotation was a seventh of the forward pass, cast and copied four times."""
    half = cos.shape[-1]
    cos, sin = (t.view(*t.shape[:-1], *[1] * (x.dim() - t.dim()), half) for t in (cos, sin))
    first, second, passed = x[..., :half], x[..., half:2 * half], x[..., 2 * half:]
    parts = (torch.addcmul(first * cos, second, sin, value=-1).to(x.dtype),
             torch.addcmul(second * cos, first, sin).to(x.dtype))
    return torch.cat((*parts, passed) if passed.shape[-1] else parts, dim=-1)


def eager_attention_forward(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    """Plain softmax attention. query/key/value: (batch, heads, length, dim); `attention_mask`: boolean (True: attend)
    or additive, broadcastable to the scores. Returns (batch, length, heads, dim) and the attention probabilities."""
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None and attention_mask.dtype == torch.bool:
        scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
    elif attention_mask is not None:
        scores = scores + attention_mask
    probs = F.dropout(scores.softmax(dim=-1, dtype=torch.float32).to(query.dtype), p=dropout, training=module.training)
    return torch.matmul(probs, value).transpose(1, 2).contiguous(), probs


def attention_interface(implementation: str | None):
    return ALL_ATTENTION_FUNCTIONS.get_interface(implementation or "sdpa", eager_attention_forward)


def flash_capable(device: torch.device) -> bool:
    """Whether PyTorch's flash kernels run on this CUDA device (compute capability 8.0 or newer)."""
    return torch.cuda.get_device_capability(device) >= (8, 0)


def packed_attention_kernel(
    implementation: str | None, device: torch.device, dtype: torch.dtype, equal_lengths: bool, dropout: float,
    head_dim: int = 64,
) -> str:
    """Which kernel attends over a packed batch (eager route):

    * `"flash_interface"`: the model runs with a flash `attn_implementation`: its variable-length call;
    * `"batched"`: every sequence has the same length: one call over `(sequences, length)`, no mask;
    * `"varlen_attn"`: PyTorch's variable-length flash attention (sdpa models on CUDA sm80+, fp16/bf16, head_dim a
      multiple of 8 up to 256, no dropout);
    * `"masked"`: one call over the re-padded sequences with a key mask (any other accelerator or dtype);
    * `"per_sequence"`: one mask-free call per sequence (CPU).
    """
    if implementation and "flash" in implementation:
        return "flash_interface"
    if equal_lengths:
        return "batched"
    if device.type == "cpu":
        return "per_sequence"
    usable = (
        varlen_attn is not None and device.type == "cuda" and dtype in (torch.float16, torch.bfloat16)
        and head_dim % 8 == 0 and head_dim <= 256 and dropout == 0.0
    )
    if (implementation or "sdpa") == "sdpa" and usable and flash_capable(device):
        return "varlen_attn"
    return "masked"


@dataclass
class PackedSequences:
    """The real tokens of a batch, concatenated (eager route; building it reads the lengths on the host)."""

    lengths: list[int]  # tokens per sequence
    cu_seqlens: torch.Tensor  # (sequences + 1,) int32 offsets of each sequence in the token axis
    sequence_ids: torch.Tensor  # (tokens,) sequence each token belongs to
    offsets: torch.Tensor  # (tokens,) index of each token inside its sequence
    indices: torch.Tensor | None  # (tokens,) flat positions in the caller's (batch * length) grid; None: no padding

    @classmethod
    def from_lengths(cls, lengths: torch.Tensor, indices: torch.Tensor | None = None) -> "PackedSequences":
        device = lengths.device
        cu_seqlens = F.pad(lengths.cumsum(0), (1, 0)).to(torch.int32)
        sequence_ids = torch.repeat_interleave(torch.arange(len(lengths), device=device), lengths)
        offsets = torch.arange(len(sequence_ids), device=device) - cu_seqlens[:-1].long()[sequence_ids]
        return cls(lengths.tolist(), cu_seqlens, sequence_ids, offsets, indices)

    @classmethod
    def from_batch(cls, batch_size, seq_length, device, attention_mask=None, cu_seq_lens=None) -> "PackedSequences":
        """From a padding mask, or from the offsets of a batch the caller already flattened (`cu_seq_lens`)."""
        if cu_seq_lens is not None:
            return cls.from_lengths(cu_seq_lens.long().diff())
        if attention_mask is None or bool(attention_mask.all()):
            return cls.from_lengths(torch.full((batch_size,), seq_length, device=device))
        indices = attention_mask.flatten().nonzero().squeeze(1)
        return cls.from_lengths(attention_mask.sum(dim=1), indices)

    def groups(self, max_tokens: int):
        """Consecutive sequences in groups of at most `max_tokens` tokens (a longer sequence alone): yields each
        group's span in the token axis and its own `PackedSequences`."""
        starts, tokens = [0], 0  # index of each group's first sequence
        for index, length in enumerate(self.lengths):
            if index > starts[-1] and tokens + length > max_tokens:
                starts.append(index)
                tokens = 0
            tokens += length
        offset = 0
        for first, end in zip(starts, starts[1:] + [len(self.lengths)]):
            lengths = torch.tensor(self.lengths[first:end], dtype=torch.long)
            yield slice(offset, offset + int(lengths.sum())), PackedSequences.from_lengths(lengths)
            offset += int(lengths.sum())

    def pack(self, grid: torch.Tensor) -> torch.Tensor:
        """(batch, length, ...) -> (tokens, ...)."""
        grid = grid.flatten(0, 1)
        return grid if self.indices is None else grid[self.indices]

    def unpack(self, tokens: torch.Tensor, batch_size: int, seq_length: int) -> torch.Tensor:
        """(tokens, hidden) -> (batch, length, hidden), zeros at padded positions."""
        if self.indices is None:
            return tokens.view(batch_size, seq_length, -1)
        grid = tokens.new_zeros(batch_size * seq_length, tokens.shape[-1])
        return grid.index_copy(0, self.indices, tokens).view(batch_size, seq_length, -1)

    def first_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """The first token of each sequence (for the pooler); zeros for a sequence without tokens."""
        if tokens.shape[0] == 0:
            return tokens.new_zeros(len(self.lengths), tokens.shape[-1])
        first = tokens[self.cu_seqlens[:-1].long().clamp(max=tokens.shape[0] - 1)]
        return first.masked_fill((self.cu_seqlens.diff() == 0)[:, None], 0.0)

    def attend(self, module: "NomicBertAttention", query, key, value) -> tuple[torch.Tensor, None]:
        """Attention within each sequence of (tokens, heads, dim) inputs; never across sequences, never over padding.
        No kernel of this route returns attention probabilities (they are recorded on the padded route)."""
        return self._attend(module, query, key, value), None

    def _attend(self, module: "NomicBertAttention", query, key, value) -> torch.Tensor:
        implementation = module.config._attn_implementation
        dropout = module.config.attn_pdrop if module.training else 0.0
        lengths, longest = self.lengths, max(self.lengths, default=0)
        kernel = packed_attention_kernel(
            implementation, query.device, query.dtype, len(set(lengths)) <= 1, dropout, module.head_dim
        )
        attention = attention_interface(implementation)

        def attend(q, k, v, mask=None, **extra):  # (batch, length, heads, dim) in and out
            out, _ = attention(
                module, q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), mask,
                dropout=dropout, scaling=module.scaling, **extra,
            )
            return out

        if query.shape[0] == 0:
            return query
        if kernel == "flash_interface":
            return attend(
                query[None], key[None], value[None], cu_seq_lens_q=self.cu_seqlens, cu_seq_lens_k=self.cu_seqlens,
                max_length_q=longest, max_length_k=longest,
            )[0]
        if kernel == "batched":
            shape = (len(lengths), longest, *query.shape[1:])
            return attend(query.view(shape), key.view(shape), value.view(shape)).reshape(query.shape)
        if kernel == "varlen_attn":
            offsets = self.cu_seqlens
            return varlen_attn(query, key, value, offsets, offsets, longest, longest, scale=module.scaling)
        if kernel == "masked":
            grid = self.sequence_ids * longest + self.offsets
            mask = torch.zeros(len(lengths) * longest, dtype=torch.bool, device=query.device).index_fill(0, grid, True)

            def pad(x):  # (tokens, ...) -> (sequences, longest, ...)
                padded = x.new_zeros(len(lengths) * longest, *x.shape[1:]).index_copy(0, grid, x)
                return padded.unflatten(0, (-1, longest))

            mask = mask.view(len(lengths), 1, 1, longest)
            return attend(pad(query), pad(key), pad(value), mask).flatten(0, 1)[grid]
        # One call per sequence, so the fused mask-free kernel applies. `split` (not slicing) keeps the backward pass
        # linear in the batch: each slice's gradient would be a zero tensor of the full size.
        outputs = [
            attend(q[None], k[None], v[None])[0]
            for q, k, v in zip(query.split(lengths), key.split(lengths), value.split(lengths))
            if q.shape[0]
        ]
        return torch.cat(outputs)


@dataclass
class PaddedBatch:
    """A padded batch run as it is, with a key-padding mask (graph route: export, compile, recorded outputs)."""

    mask: torch.Tensor  # (batch, length) bool, True at real tokens
    eager: bool = False  # attention probabilities are recorded: the eager kernel, whatever the implementation

    def first_tokens(self, states: torch.Tensor) -> torch.Tensor:
        """The first real token of each row (for the pooler); zeros for a row without any."""
        first = states[torch.arange(states.shape[0], device=states.device), self.mask.int().argmax(dim=1)]
        return first.masked_fill(~self.mask.any(dim=1)[:, None], 0.0)

    def attend(self, module: "NomicBertAttention", query, key, value):
        """(batch, length, heads, dim) in and out, and the attention probabilities where the kernel returns them."""
        implementation = "eager" if self.eager else module.config._attn_implementation
        if implementation and "flash" in implementation:  # flash kernels take no mask here: sdpa instead
            implementation = "sdpa"
        # A row without any real token attends everywhere rather than nowhere (NaN); its output is zeroed anyway.
        # Additive rather than boolean: every row keeps a key, so no NaN guard is needed (an exported graph would
        # otherwise check every probability for NaN).
        keys = self.mask | ~self.mask.any(dim=1, keepdim=True)
        bias = torch.zeros(keys.shape, dtype=query.dtype, device=query.device).masked_fill(
            ~keys, torch.finfo(query.dtype).min
        )
        return attention_interface(implementation)(
            module, query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2), bias[:, None, None, :],
            dropout=module.config.attn_pdrop if module.training else 0.0, scaling=module.scaling,
        )


class NomicBertEmbeddings(nn.Module):
    def __init__(self, config: NomicBertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.n_embd)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.n_embd)

    def forward(self, input_ids=None, token_type_ids=None, inputs_embeds=None) -> torch.Tensor:
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)
        if token_type_ids is None:
            token_type_ids = torch.zeros(inputs_embeds.shape[:-1], dtype=torch.long, device=inputs_embeds.device)
        return inputs_embeds + self.token_type_embeddings(token_type_ids)


class NomicBertAttention(nn.Module):
    def __init__(self, config: NomicBertConfig, layer_idx: int):
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        self.num_heads = config.n_head
        self.head_dim = config.head_dim
        self.scaling = self.head_dim**-0.5
        self.is_causal = False
        self.Wqkv = nn.Linear(config.n_embd, 3 * config.n_embd, bias=False)
        self.out_proj = nn.Linear(config.n_embd, config.n_embd, bias=False)

    def forward(self, hidden_states, layout: PackedSequences | PaddedBatch, cos, sin):
        """`hidden_states`: (tokens, hidden) packed or (batch, length, hidden) padded. Returns the output in the same
        layout and the attention probabilities (eager kernel on the padded route) or None."""
        qkv = self.Wqkv(hidden_states).unflatten(-1, (3, self.num_heads, self.head_dim))
        query, key = apply_rotary(qkv[..., :2, :, :], cos, sin).unbind(-3)  # both in one pass
        value = qkv[..., 2, :, :]
        output, weights = layout.attend(self, query, key, value)
        return self.out_proj(output.flatten(-2)), weights


class NomicBertGatedMLP(nn.Module):
    """`fc2(fc11(x) * act(fc12(x)))`: `fc11` is the value projection, `fc12` the gate.

    On CPU, packed tokens go through in slices of `cpu_working_tokens`.
    """

    def __init__(self, config: NomicBertConfig):
        super().__init__()
        self.fc11 = nn.Linear(config.n_embd, config.n_inner, bias=False)
        self.fc12 = nn.Linear(config.n_embd, config.n_inner, bias=False)
        self.fc2 = nn.Linear(config.n_inner, config.n_embd, bias=False)
        self.activation = ACT2FN[GATED_ACTIVATIONS[config.activation_function]]

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if hidden_states.device.type == "cpu" and hidden_states.dim() == 2:  # packed tokens (eager route)
            slices = hidden_states.split(cpu_working_tokens(hidden_states.dtype))
            parts = [self.gated(part, not torch.is_grad_enabled()) for part in slices]
            return torch.cat(parts) if len(parts) > 1 else parts[0]
        return self.gated(hidden_states)

    def gated(self, hidden_states: torch.Tensor, in_place: bool = False) -> torch.Tensor:
        gate = self.activation(self.fc12(hidden_states))  # first, so that at most two (tokens, n_inner) are alive
        product = self.fc11(hidden_states).mul_(gate) if in_place else self.fc11(hidden_states) * gate
        del gate
        return self.fc2(product)


class NomicBertBlock(GradientCheckpointingLayer):
    """Post-norm block: `norm1(x + attn(x))`, then `norm2(x + mlp(x))`."""

    def __init__(self, config: NomicBertConfig, layer_idx: int):
        super().__init__()
        self.attn = NomicBertAttention(config, layer_idx)
        self.mlp = NomicBertGatedMLP(config)
        self.dropout1 = nn.Dropout(config.resid_pdrop)
        self.norm1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.dropout2 = nn.Dropout(config.resid_pdrop)
        self.norm2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)

    def forward(self, hidden_states, layout: PackedSequences | PaddedBatch, cos, sin) -> torch.Tensor:
        attended, _ = self.attn(hidden_states, layout, cos, sin)
        hidden_states = self.norm1(hidden_states + self.dropout1(attended))
        return self.norm2(hidden_states + self.dropout2(self.mlp(hidden_states)))


class NomicBertEncoder(nn.Module):
    def __init__(self, config: NomicBertConfig):
        super().__init__()
        self.layers = nn.ModuleList([NomicBertBlock(config, i) for i in range(config.n_layer)])


class NomicBertPooler(nn.Module):
    """Dense + tanh on the first real token of each sequence (for sequence classification)."""

    def __init__(self, config: NomicBertConfig):
        super().__init__()
        self.dense = nn.Linear(config.n_embd, config.n_embd)

    def forward(self, first_tokens: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(first_tokens))


class NomicBertPreTrainedModel(PreTrainedModel):
    config_class = NomicBertConfig
    base_model_prefix = "bert"
    supports_gradient_checkpointing = True
    _no_split_modules = ["NomicBertBlock"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_attention_backend = True
    _can_record_outputs = {"hidden_states": NomicBertBlock, "attentions": NomicBertAttention}

    @torch.no_grad()
    def _init_weights(self, module: nn.Module):
        """Nomic's initialisation: normal(0, initializer_range) weights, zero biases, unit LayerNorms."""
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Embedding)):
            init.normal_(module.weight, mean=0.0, std=std)
        if isinstance(module, nn.Linear) and module.bias is not None:
            init.zeros_(module.bias)
        if isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)

    def resize_token_embeddings(self, new_num_tokens=None, pad_to_multiple_of=None, mean_resizing=True):
        """As transformers' method, to any size. The config rounds `vocab_size` up to a multiple of
        `pad_vocab_size_multiple` (64 in Nomic's checkpoints) when it loads, so that multiple is lowered to one the
        new size keeps (their greatest common divisor): the saved model reloads at the size it was resized to."""
        embeddings = super().resize_token_embeddings(new_num_tokens, pad_to_multiple_of, mean_resizing)
        self.config.pad_vocab_size_multiple = math.gcd(self.config.pad_vocab_size_multiple, embeddings.num_embeddings)
        return embeddings


class NomicBertModel(NomicBertPreTrainedModel):
    """The encoder. Returns `last_hidden_state` (batch, length, hidden) with zeros at padded positions; the pooler
    (`add_pooling_layer=True`, used by sequence classification) pools the first real token of each sequence."""

    _auto_class = "AutoModel"

    def __init__(self, config: NomicBertConfig, add_pooling_layer: bool = False):
        super().__init__(config)
        self.embeddings = NomicBertEmbeddings(config)
        self.emb_ln = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.emb_drop = nn.Dropout(config.resid_pdrop)
        self.encoder = NomicBertEncoder(config)
        self.pooler = NomicBertPooler(config) if add_pooling_layer else None
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding):
        self.embeddings.word_embeddings = value

    @capture_outputs
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        cu_seq_lens_q: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutputWithPooling:
        """`input_ids` (batch, length), or `inputs_embeds` (batch, length, hidden), padded on either side, with
        `attention_mask`; or a batch flattened by the caller (batch 1) with `cu_seq_lens_q` offsets, as
        sentence-transformers sends with flash attention. `position_ids` (batch or 1, length) replace the positions
        that otherwise restart at each sequence's first real token. `output_hidden_states` / `output_attentions`
        record every layer's output (from the padded route, in (batch, length, ...) shapes; attention probabilities
        from the eager kernel, whatever `attn_implementation` says). Other keyword arguments (the rest of the
        flattening keys, the Trainer's `num_items_in_batch`) are ignored."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError(
                "pass exactly one of input_ids and inputs_embeds (got "
                + ("both" if input_ids is not None else "neither") + ")"
            )
        batch_size, seq_length = (input_ids if input_ids is not None else inputs_embeds).shape[:2]
        device = (input_ids if input_ids is not None else inputs_embeds).device
        attention_mask = None if attention_mask is None else attention_mask.bool()
        position_ids = None if position_ids is None else position_ids.long()
        records_attentions = kwargs.get("output_attentions", self.config.output_attentions)
        if runs_padded() or records_attentions or kwargs.get("output_hidden_states", self.config.output_hidden_states):
            if cu_seq_lens_q is not None:
                raise ValueError(
                    "a flattened batch (cu_seq_lens_q) runs only in eager calls without recorded outputs; pass a "
                    "padded batch with attention_mask to record hidden states or attentions, or to compile or export"
                )
            if seq_length > self.config.n_positions:
                raise ValueError(self._too_long(seq_length))
            mask = torch.ones(batch_size, seq_length, dtype=torch.bool, device=device)
            layout = PaddedBatch(mask if attention_mask is None else attention_mask, bool(records_attentions))
            if position_ids is None:
                position_ids = (layout.mask.cumsum(dim=1) - 1).clamp(min=0)
            else:
                position_ids = position_ids.expand(batch_size, seq_length)
            lengths = position_ids.masked_fill(~layout.mask, 0).amax(dim=1) + 1
            inv_freq = rotary_inv_freq(self.config, lengths)[:, None, :]
            inputs = (input_ids, token_type_ids, inputs_embeds)
        else:
            layout = PackedSequences.from_batch(batch_size, seq_length, device, attention_mask, cu_seq_lens_q)
            if max(layout.lengths, default=0) > self.config.n_positions:
                raise ValueError(self._too_long(max(layout.lengths)))
            lengths = layout.cu_seqlens.diff().long()
            if position_ids is None:
                position_ids = layout.offsets
            else:
                position_ids = layout.pack(position_ids.expand(batch_size, seq_length))
                lengths = lengths.new_zeros(len(lengths))
                lengths = lengths.scatter_reduce(0, layout.sequence_ids, position_ids + 1, "amax")
            inv_freq = rotary_inv_freq(self.config, lengths)[layout.sequence_ids]
            inputs = tuple(None if x is None else layout.pack(x) for x in (input_ids, token_type_ids, inputs_embeds))
        cos, sin = rotary_cos_sin(position_ids, inv_freq)
        if isinstance(layout, PackedSequences) and device.type == "cpu":
            parts = [
                self._encode(tuple(None if x is None else x[span] for x in inputs), group, cos[span], sin[span])
                for span, group in layout.groups(cpu_working_tokens(self.dtype))
            ]
            hidden_states = torch.cat(parts) if len(parts) > 1 else parts[0]
        else:
            hidden_states = self._encode(inputs, layout, cos, sin)

        if isinstance(layout, PaddedBatch):
            last_hidden_state = torch.where(layout.mask[..., None], hidden_states, 0.0)
        else:
            last_hidden_state = layout.unpack(hidden_states, batch_size, seq_length)
        pooled = self.pooler(layout.first_tokens(hidden_states)) if self.pooler is not None else None
        return BaseModelOutputWithPooling(last_hidden_state=last_hidden_state, pooler_output=pooled)

    def _encode(self, inputs: tuple, layout: PackedSequences | PaddedBatch, cos, sin) -> torch.Tensor:
        """Embeddings and every block, from `(input_ids, token_type_ids, inputs_embeds)` in the layout's shape. Only
        the inputs outlive the call's activations (a group's embeddings are not kept while the others run)."""
        hidden_states = self.emb_drop(self.emb_ln(self.embeddings(*inputs)))
        for layer in self.encoder.layers:
            hidden_states = layer(hidden_states, layout, cos, sin)
        return hidden_states

    def _too_long(self, length: int) -> str:
        return (
            f"an input has {length} tokens, more than n_positions = {self.config.n_positions}; truncate it "
            f"(tokenizer(..., truncation=True, max_length={self.config.n_positions})) or raise n_positions"
        )


class NomicBertPredictionHeadTransform(nn.Module):
    def __init__(self, config: NomicBertConfig):
        super().__init__()
        self.dense = nn.Linear(config.n_embd, config.n_embd, bias=False)
        self.activation = ACT2FN[GATED_ACTIVATIONS[config.activation_function]]
        self.layer_norm = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.layer_norm(self.activation(self.dense(hidden_states)))


class NomicBertLMPredictionHead(nn.Module):
    def __init__(self, config: NomicBertConfig):
        super().__init__()
        self.transform = NomicBertPredictionHeadTransform(config)
        self.decoder = nn.Linear(config.n_embd, config.vocab_size, bias=False)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.transform(hidden_states))


class NomicBertPreTrainingHeads(nn.Module):
    def __init__(self, config: NomicBertConfig):
        super().__init__()
        self.predictions = NomicBertLMPredictionHead(config)


class NomicBertForPreTraining(NomicBertPreTrainedModel):
    """Masked-language model (nomic-bert-2048): dense, activation, LayerNorm, then a decoder tied to the word
    embeddings, no biases. With `labels` and `config.dense_seq_output`, only the masked positions (labels != -100) are
    decoded and `logits` has shape (masked tokens, vocab); otherwise, and in a traced graph (whose shapes cannot
    depend on the labels), (batch, length, vocab). The loss is the same either way."""

    _auto_class = "AutoModelForMaskedLM"
    _tied_weights_keys = {"cls.predictions.decoder.weight": "bert.embeddings.word_embeddings.weight"}

    def __init__(self, config: NomicBertConfig):
        super().__init__(config)
        self.bert = NomicBertModel(config)
        self.cls = NomicBertPreTrainingHeads(config)
        self.loss_type = "ForMaskedLM"
        self.post_init()

    def get_output_embeddings(self) -> nn.Linear:
        return self.cls.predictions.decoder

    def set_output_embeddings(self, new_embeddings: nn.Linear):
        self.cls.predictions.decoder = new_embeddings

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> MaskedLMOutput:
        outputs = self.bert(
            input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, position_ids=position_ids,
            inputs_embeds=inputs_embeds, return_dict=True, **kwargs,
        )
        hidden_states = outputs.last_hidden_state
        if labels is not None and self.config.dense_seq_output and not runs_padded():
            masked = labels != -100
            hidden_states, labels = hidden_states[masked], labels[masked]
        logits = self.cls.predictions(hidden_states)
        loss = None
        if labels is not None:
            loss = self.loss_function(logits, labels, vocab_size=self.config.vocab_size, **kwargs)
        return MaskedLMOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


NomicBertForMaskedLM = NomicBertForPreTraining


class NomicBertForSequenceClassification(NomicBertPreTrainedModel):
    """Pooler (dense + tanh on the first real token), dropout, linear classifier; regression when `num_labels == 1`."""

    _auto_class = "AutoModelForSequenceClassification"

    def __init__(self, config: NomicBertConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert = NomicBertModel(config, add_pooling_layer=True)
        dropout = config.classifier_dropout if config.classifier_dropout is not None else config.embd_pdrop
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(config.n_embd, config.num_labels)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> SequenceClassifierOutput:
        outputs = self.bert(
            input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, position_ids=position_ids,
            inputs_embeds=inputs_embeds, return_dict=True, **kwargs,
        )
        logits = self.classifier(self.dropout(outputs.pooler_output))
        loss = None
        if labels is not None:
            loss = self.loss_function(labels=labels, pooled_logits=logits, config=self.config)
        return SequenceClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


class NomicBertForTokenClassification(NomicBertPreTrainedModel):
    """Dropout and a linear classifier on every token (named entities, tagging); labels of -100 are ignored."""

    _auto_class = "AutoModelForTokenClassification"

    def __init__(self, config: NomicBertConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert = NomicBertModel(config)
        dropout = config.classifier_dropout if config.classifier_dropout is not None else config.embd_pdrop
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(config.n_embd, config.num_labels)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> TokenClassifierOutput:
        outputs = self.bert(
            input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, position_ids=position_ids,
            inputs_embeds=inputs_embeds, return_dict=True, **kwargs,
        )
        logits = self.classifier(self.dropout(outputs.last_hidden_state))
        loss = None
        if labels is not None:
            loss = self.loss_function(logits, labels, self.config, **kwargs)
        return TokenClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


__all__ = [
    "NomicBertForMaskedLM",
    "NomicBertForPreTraining",
    "NomicBertForSequenceClassification",
    "NomicBertForTokenClassification",
    "NomicBertModel",
    "NomicBertPreTrainedModel",
]
