"""NomicBERT configuration.

This file is shipped next to the weights as remote code: it imports only transformers and stays self-contained.

One config.json serves two readers:

* this package's classes (``trust_remote_code=True``) read the key names Nomic published (GPT-2 style: ``n_embd``,
  ``n_layer``, ``n_head``, ``n_inner``, ``n_positions``, ``rotary_emb_base``, ``rotary_scaling_factor``,
  ``max_trained_positions``, ...);
* transformers' native ``nomic_bert`` (no remote code) reads the BERT-style names (``hidden_size``,
  ``num_hidden_layers``, ``num_attention_heads``, ``intermediate_size``, ``max_position_embeddings``,
  ``layer_norm_eps``, ``hidden_act``, ``rope_parameters``, ``head_dim``).

``to_dict`` writes both sets. On load either set is accepted; where a file holds both, they must agree, otherwise a
``ValueError`` names the two keys. The BERT-style names are also readable as attributes (``config.hidden_size``).

``max_position_embeddings`` is the one name with two meanings, because it has two readers:

* the KEY (config.json, ``to_dict``, constructor kwargs) is native's: the trained length, ``max_trained_positions``
  (2048), where native's dynamic-NTK RoPE starts scaling;
* the ATTRIBUTE (``config.max_position_embeddings``) is ours and means what generic tools (sentence-transformers among
  them) read it as: the longest input accepted, ``n_positions`` (8192). Setting it sets ``n_positions``, and so do
  ``from_pretrained(..., max_position_embeddings=...)`` overrides, which transformers applies as attributes.
"""

from transformers import PreTrainedConfig

# Gated MLP activations: the published name and the activation applied to the gate (`fc12`).
GATED_ACTIVATIONS = {"swiglu": "silu", "geglu": "gelu"}

# Flags of Nomic's code that select variants the published checkpoints do not use; only their default is supported.
FIXED_FLAGS = {
    "rotary_emb_interleaved": False,
    "rotary_emb_scale_base": None,
    "prenorm": False,
    "parallel_block": False,
    "qkv_proj_bias": False,
    "mlp_fc1_bias": False,
    "mlp_fc2_bias": False,
    "causal": False,
    "use_rms_norm": False,
}

# Keys Nomic's config.json carries that no code path reads (GPT-2 leftovers and CUDA-kernel switches); dropped on load.
UNUSED_KEYS = (
    "fused_bias_fc", "fused_dropout_add_ln", "use_flash_attn", "use_xentropy", "parallel_block_tied_norm",
    "reorder_and_upcast_attn", "scale_attn_by_inverse_layer_idx", "scale_attn_weights", "use_cache",
    "summary_activation", "summary_first_dropout", "summary_proj_to_labels", "summary_type", "summary_use_proj",
    "n_ctx", "last_layer_subset", "rotary_head_dim", "num_heads_kv",
)

# BERT-style name -> published name, for keys that differ only in name.
RENAMED = {
    "hidden_size": "n_embd",
    "num_hidden_layers": "n_layer",
    "num_attention_heads": "n_head",
    "intermediate_size": "n_inner",
    "max_position_embeddings": "max_trained_positions",
    "layer_norm_eps": "layer_norm_epsilon",
    "hidden_dropout_prob": "resid_pdrop",
    "attention_probs_dropout_prob": "attn_pdrop",
}

# Attribute aliases: the BERT-style names, except that the attribute `max_position_embeddings` is the longest input
# accepted (what generic tools such as sentence-transformers read it as), not the key's trained length.
ATTRIBUTE_MAP = {**RENAMED, "max_position_embeddings": "n_positions"}

# Keys written only for transformers' native reader (derived from the published ones).
NATIVE_ONLY_KEYS = (*RENAMED, "hidden_act", "rope_parameters", "head_dim")

AUTO_MAP = {
    "AutoConfig": "configuration_nomic_bert.NomicBertConfig",
    "AutoModel": "modeling_nomic_bert.NomicBertModel",
    "AutoModelForMaskedLM": "modeling_nomic_bert.NomicBertForPreTraining",
    "AutoModelForSequenceClassification": "modeling_nomic_bert.NomicBertForSequenceClassification",
    "AutoModelForTokenClassification": "modeling_nomic_bert.NomicBertForTokenClassification",
}


class NomicBertConfig(PreTrainedConfig):
    r"""
    Configuration of a NomicBERT encoder (nomic-bert-2048, nomic-embed-text-v1/v1.5). The defaults are nomic-bert-2048's
    architecture, set up to run at 8192 tokens.

    Args:
        vocab_size (`int`, defaults to 30528): vocabulary size, rounded up to `pad_vocab_size_multiple`.
        n_embd (`int`, defaults to 768): hidden size (`hidden_size`).
        n_layer (`int`, defaults to 12): number of encoder blocks (`num_hidden_layers`).
        n_head (`int`, defaults to 12): attention heads (`num_attention_heads`).
        n_inner (`int`, defaults to 3072): width of the gated MLP (`intermediate_size`). `None` means Nomic's rule,
            8/3 of `n_embd` rounded up to a multiple of 256.
        n_positions (`int`, defaults to 8192): longest input accepted; also the attribute `max_position_embeddings`,
            which sentence-transformers and other generic tools read as the input limit.
        max_trained_positions (`int`, defaults to 2048): length the model was trained at; dynamic NTK scaling starts
            above it. Written and read as the KEY `max_position_embeddings`, the meaning transformers' native
            `nomic_bert` gives it (its dynamic RoPE's original length).
        type_vocab_size (`int`, defaults to 2): token-type vocabulary; row 0 is added to every token by default.
        activation_function (`str`, defaults to `"swiglu"`): `"swiglu"` (`fc2(fc11(x) * silu(fc12(x)))`) or `"geglu"`.
        layer_norm_epsilon (`float`, defaults to 1e-12): epsilon of every LayerNorm.
        rotary_emb_base (`float`, defaults to 1000.0): RoPE base.
        rotary_emb_fraction (`float`, defaults to 1.0): share of each head's dimensions that is rotated, in (0, 1].
        rotary_scaling_factor (`float`, *optional*, defaults to 2.0): dynamic NTK factor alpha. For a sequence of
            length L > `max_trained_positions` the base becomes
            `base * (alpha * L / max_trained_positions - (alpha - 1)) ** (d / (d - 2))`; `None` disables scaling.
        resid_pdrop / embd_pdrop / attn_pdrop (`float`, default 0.0): dropout after the embeddings and each residual
            branch / of the classifier (unless `classifier_dropout` is set) / on attention probabilities.
        initializer_range (`float`, defaults to 0.02): std of the normal initialisation.
        pad_vocab_size_multiple (`int`, defaults to 64): `vocab_size` is rounded up to a multiple of it
            (`resize_token_embeddings` lowers it to one the new size keeps).
        dense_seq_output (`bool`, defaults to `True`): with labels, the MLM head decodes only the masked positions.
        classifier_dropout (`float`, *optional*): dropout before the sequence-classification layer.

    Examples:

    ```python
    >>> from nomic_bert_hf import NomicBertConfig, NomicBertModel
    >>> config = NomicBertConfig(n_embd=256, n_layer=4, n_head=4, n_inner=1024)
    >>> model = NomicBertModel(config)
    ```
    """

    model_type = "nomic_bert"
    attribute_map = ATTRIBUTE_MAP
    _auto_class = "AutoConfig"

    def __init__(self, **kwargs):
        for key in UNUSED_KEYS:
            kwargs.pop(key, None)
        implied = _implied_by_native_keys(kwargs)
        for name, default in DEFAULTS.items():
            if name in kwargs:
                value = kwargs.pop(name)
                if name in implied and implied[name] != value:
                    raise ValueError(
                        f"config has {name}={value!r} but its transformers-native keys give {implied[name]!r}"
                    )
            else:
                value = implied.get(name, default)
            setattr(self, name, value)
        if self.n_inner is None:  # Nomic's rule for a gated MLP without an explicit width
            self.n_inner = (int(8 * self.n_embd / 3) + 255) // 256 * 256
        multiple = self.pad_vocab_size_multiple
        self.vocab_size = (self.vocab_size + multiple - 1) // multiple * multiple
        for flag, supported in FIXED_FLAGS.items():
            setattr(self, flag, kwargs.pop(flag, supported))
        kwargs.pop("auto_map", None)  # always this file's own classes, never another repository's code
        kwargs.setdefault("pad_token_id", 0)
        kwargs.setdefault("tie_word_embeddings", True)
        super().__init__(**kwargs)
        self.auto_map = dict(AUTO_MAP)
        self._validate(implied.get("head_dim"))

    def _validate(self, head_dim):
        if self.n_embd % self.n_head != 0:
            raise ValueError(f"n_embd (hidden_size) = {self.n_embd} is not divisible by n_head = {self.n_head}")
        if head_dim is not None and head_dim != self.head_dim:
            raise ValueError(f"head_dim = {head_dim} disagrees with n_embd / n_head = {self.head_dim}")
        if self.activation_function not in GATED_ACTIVATIONS:
            raise ValueError(
                f"activation_function = {self.activation_function!r} is not supported; use one of "
                f"{sorted(GATED_ACTIVATIONS)}"
            )
        if not 0.0 < self.rotary_emb_fraction <= 1.0:
            raise ValueError(f"rotary_emb_fraction = {self.rotary_emb_fraction} must be in (0, 1]")
        rotary_dim = int(self.head_dim * self.rotary_emb_fraction)
        if rotary_dim % 2 or rotary_dim < (4 if self.rotary_scaling_factor else 2):
            raise ValueError(
                f"rotary_emb_fraction = {self.rotary_emb_fraction} gives a rotary dimension of {rotary_dim} for "
                f"head_dim {self.head_dim}; it must be even and at least 2 (4 with rotary_scaling_factor)"
            )
        if self.rotary_scaling_factor is not None and self.rotary_scaling_factor < 1:
            raise ValueError(f"rotary_scaling_factor = {self.rotary_scaling_factor} must be >= 1 (or None)")
        for flag, supported in FIXED_FLAGS.items():
            if getattr(self, flag) != supported:
                raise ValueError(f"{flag} = {getattr(self, flag)!r} is not supported (only {supported!r})")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    def native_rope_parameters(self) -> dict:
        """RoPE settings in the format of transformers' native `nomic_bert` (`rope_parameters`)."""
        params = {"rope_type": "default", "rope_theta": float(self.rotary_emb_base)}
        if self.rotary_scaling_factor:
            params.update(rope_type="dynamic", factor=float(self.rotary_scaling_factor))
        if self.rotary_emb_fraction != 1.0:
            params["partial_rotary_factor"] = self.rotary_emb_fraction
        return params

    def to_dict(self) -> dict:
        output = super().to_dict()
        output.update({native: output[published] for native, published in RENAMED.items()})
        output["hidden_act"] = GATED_ACTIVATIONS[self.activation_function]
        output["rope_parameters"] = self.native_rope_parameters()
        output["head_dim"] = self.head_dim
        return output


DEFAULTS = {
    "vocab_size": 30528,
    "n_embd": 768,
    "n_layer": 12,
    "n_head": 12,
    "n_inner": 3072,
    "n_positions": 8192,
    "max_trained_positions": 2048,
    "type_vocab_size": 2,
    "activation_function": "swiglu",
    "layer_norm_epsilon": 1e-12,
    "rotary_emb_base": 1000.0,
    "rotary_emb_fraction": 1.0,
    "rotary_scaling_factor": 2.0,
    "resid_pdrop": 0.0,
    "embd_pdrop": 0.0,
    "attn_pdrop": 0.0,
    "initializer_range": 0.02,
    "pad_vocab_size_multiple": 64,
    "dense_seq_output": True,
    "classifier_dropout": None,
}


def _implied_by_native_keys(kwargs: dict) -> dict:
    """Pop transformers' native keys and translate them to the published names (plus `head_dim`, checked later)."""
    implied = {published: kwargs.pop(native) for native, published in RENAMED.items() if native in kwargs}
    if "hidden_act" in kwargs:
        hidden_act = kwargs.pop("hidden_act")
        matches = [name for name, act in GATED_ACTIVATIONS.items() if act == hidden_act]
        if not matches:
            raise ValueError(
                f"hidden_act = {hidden_act!r} has no NomicBERT equivalent; use one of "
                f"{sorted(GATED_ACTIVATIONS.values())}"
            )
        implied["activation_function"] = matches[0]
    rope = kwargs.pop("rope_parameters", None) or kwargs.pop("rope_scaling", None)
    rope_theta = kwargs.pop("rope_theta", None)
    if rope is not None:
        rope_type = rope.get("rope_type", rope.get("type", "default"))
        if rope_type not in ("default", "dynamic"):
            raise ValueError(f"rope_parameters.rope_type = {rope_type!r} is not supported (only default or dynamic)")
        implied["rotary_scaling_factor"] = rope.get("factor") if rope_type == "dynamic" else None
        rope_theta = rope.get("rope_theta", rope_theta)
        if "partial_rotary_factor" in rope:
            implied["rotary_emb_fraction"] = rope["partial_rotary_factor"]
    if rope_theta is not None:
        implied["rotary_emb_base"] = rope_theta
    if "head_dim" in kwargs:
        implied["head_dim"] = kwargs.pop("head_dim")
    return implied


__all__ = ["NomicBertConfig"]
