"""NomicBertConfig: both key sets in one file, Nomic's published configs, and clear errors for bad values."""

import pytest
import transformers
from conftest import tiny_config

from nomic_bert_hf import NomicBertConfig
from nomic_bert_hf.configuration_nomic_bert import AUTO_MAP

# nomic-bert-2048's published config.json (mirrored at taylorbollman/hf_nomicbert_tb), GPT-2 leftovers included.
NOMIC_BERT_2048 = {
    "activation_function": "swiglu", "architectures": ["NomicBertForPreTraining"], "attn_pdrop": 0.0,
    "auto_map": {"AutoConfig": "configuration_hf_nomic_bert.NomicBertConfig"}, "bos_token_id": None,
    "causal": False, "dense_seq_output": True, "embd_pdrop": 0.1, "eos_token_id": None, "fused_bias_fc": True,
    "fused_dropout_add_ln": True, "initializer_range": 0.02, "layer_norm_epsilon": 1e-12, "mlp_fc1_bias": False,
    "mlp_fc2_bias": False, "model_type": "nomic_bert", "n_embd": 768, "n_head": 12, "n_inner": 3072, "n_layer": 12,
    "n_positions": 2048, "pad_vocab_size_multiple": 64, "parallel_block": False, "parallel_block_tied_norm": False,
    "prenorm": False, "qkv_proj_bias": False, "reorder_and_upcast_attn": False, "resid_pdrop": 0.1,
    "rotary_emb_base": 1000, "rotary_emb_fraction": 1.0, "rotary_emb_interleaved": False,
    "rotary_emb_scale_base": None, "scale_attn_by_inverse_layer_idx": False, "scale_attn_weights": True,
    "summary_activation": None, "summary_first_dropout": 0.1, "summary_proj_to_labels": True,
    "summary_type": "cls_index", "summary_use_proj": True, "torch_dtype": "float32", "type_vocab_size": 2,
    "use_cache": True, "use_flash_attn": True, "use_rms_norm": False, "use_xentropy": True, "vocab_size": 30528,
}


def test_round_trip_keeps_every_value():
    config = tiny_config(resid_pdrop=0.1)
    assert NomicBertConfig(**config.to_dict()).to_dict() == config.to_dict()


def test_nomic_bert_2048_config_reads_as_published():
    config = NomicBertConfig(**NOMIC_BERT_2048)
    assert (config.hidden_size, config.num_hidden_layers, config.intermediate_size) == (768, 12, 3072)
    assert (config.n_positions, config.max_trained_positions, config.rotary_emb_base) == (2048, 2048, 1000)
    assert config.max_position_embeddings == config.n_positions  # the attribute is the input limit
    assert config.resid_pdrop == 0.1 and config.embd_pdrop == 0.1
    assert config.auto_map == AUTO_MAP  # never the cross-repository code of the source
    assert "fused_bias_fc" not in config.to_dict() and "summary_type" not in config.to_dict()


def test_one_file_serves_the_native_reader():
    saved = tiny_config(rotary_scaling_factor=2.0).to_dict()
    native = transformers.NomicBertConfig(**saved)
    assert (native.hidden_size, native.num_hidden_layers, native.num_attention_heads) == (32, 2, 4)
    assert (native.intermediate_size, native.max_position_embeddings, native.hidden_act) == (64, 2048, "silu")
    assert native.rope_parameters == {"rope_type": "dynamic", "rope_theta": 1000.0, "factor": 2.0}
    assert saved["n_embd"] == 32 and saved["rotary_scaling_factor"] == 2.0  # and the published keys are there too


def test_max_position_embeddings_is_the_input_limit_as_attribute_and_the_trained_length_as_key(tmp_path):
    config = tiny_config(n_positions=8192, max_trained_positions=1024)
    assert config.max_position_embeddings == 8192  # what sentence-transformers caps model_max_length at
    assert config.to_dict()["max_position_embeddings"] == 1024  # what native's dynamic RoPE starts scaling above
    config.save_pretrained(tmp_path)
    reloaded = NomicBertConfig.from_pretrained(tmp_path)
    assert (reloaded.n_positions, reloaded.max_trained_positions) == (8192, 1024)
    assert reloaded.max_position_embeddings == 8192
    native = transformers.AutoConfig.from_pretrained(tmp_path)  # no remote code: transformers' own class
    assert type(native) is transformers.NomicBertConfig and native.max_position_embeddings == 1024
    config.max_position_embeddings = 4096  # setting the attribute moves the input limit, not the trained length
    assert (config.n_positions, config.max_trained_positions) == (4096, 1024)
    assert NomicBertConfig.from_pretrained(tmp_path, max_position_embeddings=4096).n_positions == 4096


def test_native_keys_alone_are_understood():
    config = NomicBertConfig(
        hidden_size=64, num_hidden_layers=3, num_attention_heads=8, intermediate_size=128, hidden_act="silu",
        rope_parameters={"rope_type": "dynamic", "rope_theta": 500.0, "factor": 4.0}, max_position_embeddings=1024,
    )
    assert (config.n_embd, config.n_layer, config.n_head, config.n_inner) == (64, 3, 8, 128)
    assert (config.rotary_emb_base, config.rotary_scaling_factor, config.max_trained_positions) == (500.0, 4.0, 1024)
    assert NomicBertConfig(rope_parameters={"rope_type": "default", "rope_theta": 1000.0}).rotary_scaling_factor is None


def test_rotary_scaling_factor_can_be_set_at_load(encoder_dir):
    config = NomicBertConfig.from_pretrained(encoder_dir, rotary_scaling_factor=4.0)
    assert config.rotary_scaling_factor == 4.0 and config.to_dict()["rope_parameters"]["factor"] == 4.0


def test_vocab_is_padded_to_the_multiple():
    assert NomicBertConfig(vocab_size=30522).vocab_size == 30528


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"n_embd": 30, "n_head": 4}, "n_embd"),
        ({"activation_function": "gelu"}, "activation_function"),
        ({"hidden_act": "relu"}, "hidden_act"),
        ({"rotary_emb_fraction": 0.0}, "rotary_emb_fraction"),
        ({"rotary_emb_fraction": 1.5}, "rotary_emb_fraction"),
        ({"rotary_scaling_factor": 0.5}, "rotary_scaling_factor"),
        ({"prenorm": True}, "prenorm"),
        ({"qkv_proj_bias": True}, "qkv_proj_bias"),
        ({"n_embd": 768, "hidden_size": 512}, "n_embd"),
        ({"max_trained_positions": 2048, "max_position_embeddings": 1024}, "max_trained_positions"),  # key: trained
        ({"rotary_scaling_factor": 2.0, "rope_parameters": {"rope_type": "dynamic", "factor": 4.0}},
         "rotary_scaling_factor"),
        ({"rope_parameters": {"rope_type": "yarn", "factor": 4.0}}, "rope_type"),
        ({"n_embd": 64, "n_head": 4, "rotary_emb_fraction": 0.125}, "rotary dimension of 2"),  # NTK needs 4
        ({"head_dim": 32}, "head_dim"),
    ],
)
def test_invalid_configs_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        NomicBertConfig(**kwargs)


def test_nomic_bert_model_type_stays_native():
    import nomic_bert_hf  # noqa: F401  (importing the package must not re-register the model type)

    assert transformers.AutoConfig.for_model("nomic_bert").__class__ is transformers.NomicBertConfig
