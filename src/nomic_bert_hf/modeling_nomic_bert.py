"""NomicBERT: a post-LayerNorm BERT encoder with rotary embeddings and SwiGLU, as in nomic-bert-2048 and nomic-embed-text.

This file is shipped next to the weights as remote code: it imports only torch and transformers.

Parameter names are those of Nomic's published checkpoints (`emb_ln`, `encoder.layers.N.attn.Wqkv`, `mlp.fc11`, ...),
so their safetensors load without renaming.

The encoder runs on the real tokens only. A padded batch is packed into one `[tokens, hidden]` matrix for the linear
layers, and attention runs per sequence (or as one variable-length call with flash attention), so padding costs no
compute and a text's output does not depend on what it is batched with. Rotary positions restart at each sequence, so
left and right padding give the same result. With dynamic NTK scaling, each sequence's RoPE base comes from its own
length, not the padded length of its batch, and nothing is cached between calls (both differ from Nomic's code and
transformers' native class, which compute the base from the longest sequence seen; the results agree wherever a
sequence is run alone or every sequence is at most `max_trained_positions` long).
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from transformers import PreTrainedModel
from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPooling, MaskedLMOutput, SequenceClassifierOutput
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.utils.generic import can_return_tuple

from .configuration_nomic_bert import GATED_ACTIVATIONS, NomicBertConfig


@dataclass
class PackedSequences:
    """Where the sequences of a batch lie once their real tokens are concatenated."""

    lengths: list[int]  # tokens per sequence
    cu_seqlens: torch.Tensor  # (num_sequences + 1,) int32 offsets of each sequence in the token axis
    positions: torch.Tensor  # (tokens,) position of each token inside its sequence
    sequence_ids: torch.Tensor  # (tokens,) sequence each token belongs to
    indices: torch.Tensor | None  # (tokens,) flat positions in the padded (batch * length) grid; None: no padding

    @classmethod
    def from_lengths(cls, lengths: torch.Tensor, indices: torch.Tensor | None = None) -> "PackedSequences":
        device = lengths.device
        cu_seqlens = F.pad(lengths.cumsum(0), (1, 0)).to(torch.int32)
        sequence_ids = torch.repeat_interleave(torch.arange(len(lengths), device=device), lengths)
        total = int(cu_seqlens[-1])
        positions = torch.arange(total, device=device) - cu_seqlens[:-1].long()[sequence_ids]
        return cls(lengths.tolist(), cu_seqlens, positions, sequence_ids, indices)


def pack_batch(
    batch_size: int,
    seq_length: int,
    device: torch.device,
    attention_mask: torch.Tensor | None = None,
    cu_seq_lens: torch.Tensor | None = None,
) -> PackedSequences:
    """Describe a batch as packed sequences, from its padding mask or from offsets of an already flattened batch."""
    if cu_seq_lens is not None:
        return PackedSequences.from_lengths(cu_seq_lens.long().diff())
    if attention_mask is None or bool(attention_mask.all()):
        return PackedSequences.from_lengths(torch.full((batch_size,), seq_length, device=device))
    indices = attention_mask.flatten().nonzero().squeeze(1)
    return PackedSequences.from_lengths(attention_mask.sum(dim=1), indices)


def rotary_inv_freq(config: NomicBertConfig, length: int) -> torch.Tensor:
    """Inverse frequencies for a sequence of `length` tokens, with dynamic NTK scaling above the trained length.

    Computed with the same floating-point operations as transformers' native dynamic RoPE, so the tables agree
    bit for bit.
    """
    dim = int(config.head_dim * config.rotary_emb_fraction)
    exponents = torch.arange(0, dim, 2, dtype=torch.int64).float() / dim
    base = config.rotary_emb_base
    alpha = config.rotary_scaling_factor
    if alpha and length > config.max_trained_positions:
        scale = alpha * torch.tensor(length) / config.max_trained_positions - (alpha - 1)
        base = base * scale ** (dim / (dim - 2))
    return 1.0 / (base ** exponents)


def rotary_cos_sin(config: NomicBertConfig, packed: PackedSequences, device) -> tuple[torch.Tensor, torch.Tensor]:
    """fp32 `(cos, sin)` of shape (tokens, rotary_dim) for every token of a packed batch."""
    per_length = {length: rotary_inv_freq(config, length) for length in set(packed.lengths)}
    inv_freq = torch.stack([per_length[length] for length in packed.lengths]).to(device)
    freqs = packed.positions.float()[:, None] * inv_freq[packed.sequence_ids]
    angles = torch.cat((freqs, freqs), dim=-1)
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the first `rotary_dim` features of each head (GPT-NeoX half split), in fp32. x: (tokens, heads, dim)."""
    rotary_dim = cos.shape[-1]
    rotated, passed = x[..., :rotary_dim].float(), x[..., rotary_dim:]
    first, second = rotated.chunk(2, dim=-1)
    cos, sin = cos[:, None, :], sin[:, None, :]
    rotated = (rotated * cos + torch.cat((-second, first), dim=-1) * sin).to(x.dtype)
    return torch.cat((rotated, passed), dim=-1) if passed.shape[-1] else rotated


def eager_attention_forward(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    """Plain softmax attention. query/key/value: (batch, heads, length, dim); returns (batch, length, heads, dim)."""
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        scores = scores + attention_mask
    probs = F.dropout(scores.softmax(dim=-1, dtype=torch.float32).to(query.dtype), p=dropout, training=module.training)
    return torch.matmul(probs, value).transpose(1, 2).contiguous(), probs


class NomicBertEmbeddings(nn.Module):
    def __init__(self, config: NomicBertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.n_embd)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.n_embd)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        return self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)


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

    def forward(self, hidden_states, packed: PackedSequences, cos, sin) -> torch.Tensor:
        tokens = hidden_states.shape[0]
        query, key, value = self.Wqkv(hidden_states).view(tokens, 3, self.num_heads, self.head_dim).unbind(1)
        query, key = apply_rotary(query, cos, sin), apply_rotary(key, cos, sin)
        output = self._attend(query, key, value, packed)
        return self.out_proj(output.reshape(tokens, -1))

    def _attend(self, query, key, value, packed: PackedSequences) -> torch.Tensor:
        """Attention within each sequence of (tokens, heads, dim) inputs; never across sequences, never over padding."""
        implementation = self.config._attn_implementation or "sdpa"
        attention = ALL_ATTENTION_FUNCTIONS.get_interface(implementation, eager_attention_forward)
        dropout = self.config.attn_pdrop if self.training else 0.0

        def attend(q, k, v, **extra):  # (batch, length, heads, dim) in and out
            out, _ = attention(
                self, q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), None,
                dropout=dropout, scaling=self.scaling, **extra,
            )
            return out

        if "flash" in implementation:  # one variable-length call over the packed tokens
            max_length = max(packed.lengths)
            return attend(
                query[None], key[None], value[None], cu_seq_lens_q=packed.cu_seqlens, cu_seq_lens_k=packed.cu_seqlens,
                max_length_q=max_length, max_length_k=max_length,
            )[0]
        lengths = packed.lengths
        if query.shape[0] == 0:
            return query
        if len(set(lengths)) == 1:  # equal lengths: one batched call without a mask
            shape = (len(lengths), lengths[0], self.num_heads, self.head_dim)
            return attend(query.view(shape), key.view(shape), value.view(shape)).reshape(query.shape)
        # Unequal lengths: one call per sequence, so the fused mask-free kernel applies. `split` (not slicing) keeps
        # the backward pass linear in the batch: each slice's gradient would be a zero tensor of the full size.
        outputs = [
            attend(q[None], k[None], v[None])[0]
            for q, k, v in zip(query.split(lengths), key.split(lengths), value.split(lengths))
            if q.shape[0]
        ]
        return torch.cat(outputs)


class NomicBertGatedMLP(nn.Module):
    """`fc2(fc11(x) * act(fc12(x)))`: `fc11` is the value projection, `fc12` the gate."""

    def __init__(self, config: NomicBertConfig):
        super().__init__()
        self.fc11 = nn.Linear(config.n_embd, config.n_inner, bias=False)
        self.fc12 = nn.Linear(config.n_embd, config.n_inner, bias=False)
        self.fc2 = nn.Linear(config.n_inner, config.n_embd, bias=False)
        self.activation = ACT2FN[GATED_ACTIVATIONS[config.activation_function]]

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.fc11(hidden_states) * self.activation(self.fc12(hidden_states)))


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

    def forward(self, hidden_states, packed: PackedSequences, cos, sin) -> torch.Tensor:
        hidden_states = self.norm1(hidden_states + self.dropout1(self.attn(hidden_states, packed, cos, sin)))
        return self.norm2(hidden_states + self.dropout2(self.mlp(hidden_states)))


class NomicBertEncoder(nn.Module):
    def __init__(self, config: NomicBertConfig):
        super().__init__()
        self.layers = nn.ModuleList([NomicBertBlock(config, i) for i in range(config.n_layer)])


class NomicBertPooler(nn.Module):
    """Dense + tanh on the first token of each sequence (for sequence classification)."""

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

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        cu_seq_lens_q: torch.Tensor | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPooling:
        """`input_ids` (batch, length) padded on either side, with `attention_mask`; or a batch flattened by the caller
        (batch 1) with `cu_seq_lens_q` offsets, as sentence-transformers sends with flash attention. Positions always
        restart at each sequence, so `position_ids` is accepted for compatibility and not read. Other keyword
        arguments (the rest of the flattening keys, the Trainer's `num_items_in_batch`) are ignored."""
        batch_size, seq_length = input_ids.shape
        packed = pack_batch(batch_size, seq_length, input_ids.device, attention_mask, cu_seq_lens_q)
        longest = max(packed.lengths, default=0)
        if longest > self.config.n_positions:
            raise ValueError(
                f"an input has {longest} tokens, more than n_positions = {self.config.n_positions}; truncate it "
                f"(tokenizer(..., truncation=True, max_length={self.config.n_positions})) or raise n_positions"
            )
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        input_ids, token_type_ids = input_ids.flatten(), token_type_ids.flatten()
        if packed.indices is not None:
            input_ids, token_type_ids = input_ids[packed.indices], token_type_ids[packed.indices]

        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        hidden_states = self.emb_drop(self.emb_ln(self.embeddings(input_ids, token_type_ids)))
        cos, sin = rotary_cos_sin(self.config, packed, hidden_states.device)
        all_hidden_states = [hidden_states] if output_hidden_states else None  # kept only when asked for: memory
        for layer in self.encoder.layers:
            hidden_states = layer(hidden_states, packed, cos, sin)
            if output_hidden_states:
                all_hidden_states.append(hidden_states)

        def unpack(states: torch.Tensor) -> torch.Tensor:
            if packed.indices is None:
                return states.view(batch_size, seq_length, -1)
            padded = states.new_zeros(batch_size * seq_length, states.shape[-1])
            return padded.index_copy(0, packed.indices, states).view(batch_size, seq_length, -1)

        last_hidden_state = unpack(hidden_states)
        pooled = None
        if self.pooler is not None:
            first = packed.cu_seqlens[:-1].long().clamp(max=max(hidden_states.shape[0] - 1, 0))
            pooled = self.pooler(hidden_states[first])
        return BaseModelOutputWithPooling(
            last_hidden_state=last_hidden_state,
            pooler_output=pooled,
            hidden_states=tuple(unpack(h) for h in all_hidden_states) if output_hidden_states else None,
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
    decoded and `logits` has shape (masked tokens, vocab); otherwise (batch, length, vocab)."""

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
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs,
    ) -> MaskedLMOutput:
        outputs = self.bert(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, **kwargs)
        hidden_states = outputs.last_hidden_state
        if labels is not None and self.config.dense_seq_output:
            masked = labels != -100
            hidden_states, labels = hidden_states[masked], labels[masked]
        logits = self.cls.predictions(hidden_states)
        loss = None
        if labels is not None:
            loss = self.loss_function(logits, labels, vocab_size=self.config.vocab_size, **kwargs)
        return MaskedLMOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states)


NomicBertForMaskedLM = NomicBertForPreTraining


class NomicBertForSequenceClassification(NomicBertPreTrainedModel):
    """Pooler (dense + tanh on the first token), dropout, linear classifier; regression when `num_labels == 1`."""

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
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs,
    ) -> SequenceClassifierOutput:
        outputs = self.bert(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, **kwargs)
        logits = self.classifier(self.dropout(outputs.pooler_output))
        loss = None
        if labels is not None:
            loss = self.loss_function(labels=labels, pooled_logits=logits, config=self.config)
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states)


__all__ = [
    "NomicBertForMaskedLM",
    "NomicBertForPreTraining",
    "NomicBertForSequenceClassification",
    "NomicBertModel",
    "NomicBertPreTrainedModel",
]
