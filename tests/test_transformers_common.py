"""transformers' own common model tests (`ModelTesterMixin`, `ConfigTester`) over every model class of this package.

The mixins come from the sdist of the installed transformers (see `transformers_sources.py`); without network access on
the first run the module is skipped, with the command that fetches them.

The layout follows transformers' `tests/models/*/test_modeling_*.py`: a `ModelTester` builds a tiny config and inputs,
and `NomicBertModelTest(ModelTesterMixin, unittest.TestCase)` runs the mixin over `all_model_classes`. Tests that do not
apply to this architecture are skipped below, each with its reason; everything else must pass.
"""

import contextlib
import unittest
from unittest import mock

import pytest
import torch
import transformers
from parameterized import (
    parameterized,  # transformers' test_modeling_common needs it too (the [test] extra)
)
from transformers_sources import SourcesUnavailable, import_module

import nomic_bert_hf.modeling_nomic_bert as modeling
from nomic_bert_hf import NomicBertConfig

try:
    common = import_module("test_modeling_common")
    ConfigTester = import_module("test_configuration_common").ConfigTester
except SourcesUnavailable as error:
    pytest.skip(f"transformers' test sources are unavailable: {error}", allow_module_level=True)

ModelTesterMixin, ids_tensor, random_attention_mask = (
    common.ModelTesterMixin, common.ids_tensor, common.random_attention_mask
)

# Every model class of the modeling file (NomicBertForMaskedLM is another name of NomicBertForPreTraining).
ALL_MODEL_CLASSES = (
    modeling.NomicBertModel,
    modeling.NomicBertForPreTraining,
    modeling.NomicBertForSequenceClassification,
    modeling.NomicBertForTokenClassification,
)
MASKED_LM_CLASSES = {modeling.NomicBertForPreTraining}

NO_ROPE_PARAMETERS = (
    "NomicBERT's RoPE is set by Nomic's published keys (rotary_emb_base; rotary_scaling_factor, dynamic NTK per "
    "sequence length, the only scaling it has; rotary_emb_fraction), not by `config.rope_parameters` and "
    "transformers' ROPE_INIT_FUNCTIONS, so linear/YaRN scaling and `partial_rotary_factor` overrides do not exist "
    "for it. Its RoPE is tested in tests/test_modeling.py (NTK formula, partial rotation, parity with native)."
)


@contextlib.contextmanager
def auto_classes_resolve_to_this_package():
    """Make the Auto classes resolve `model_type="nomic_bert"` to this package's classes, and undo it on exit.

    transformers tests its in-library models through AutoModel & co. (`test_load_with_mismatched_shapes`). Our
    model_type and class names are those of transformers' native `nomic_bert`, so without this the Auto classes load
    the native classes (from our config.json, or even with our config object passed in): the test would exercise the
    native model, not this one. Registering is process-wide, hence restored after each test (other test modules check
    that a plain `AutoConfig` gives the native class)."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_MASKED_LM_MAPPING,
        MODEL_FOR_PRETRAINING_MAPPING,
        MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING,
        MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING,
        MODEL_MAPPING,
    )

    registrations = [
        (transformers.AutoModel, MODEL_MAPPING, "NomicBertModel"),
        (transformers.AutoModelForPreTraining, MODEL_FOR_PRETRAINING_MAPPING, "NomicBertForPreTraining"),
        (transformers.AutoModelForMaskedLM, MODEL_FOR_MASKED_LM_MAPPING, "NomicBertForPreTraining"),
        (
            transformers.AutoModelForSequenceClassification,
            MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING,
            "NomicBertForSequenceClassification",
        ),
        (
            transformers.AutoModelForTokenClassification,
            MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING,
            "NomicBertForTokenClassification",
        ),
    ]
    with contextlib.ExitStack() as stack:  # `_extra_content` is where `register` writes; restored as it was
        for mapping in (CONFIG_MAPPING, *(mapping for _, mapping, _ in registrations)):
            stack.enter_context(mock.patch.dict(mapping._extra_content))
        transformers.AutoConfig.register("nomic_bert", NomicBertConfig, exist_ok=True)
        for auto_class, _, name in registrations:
            auto_class.register(NomicBertConfig, getattr(modeling, name), exist_ok=True)
        yield


class NomicBertModelTester:
    def __init__(
        self,
        parent,
        batch_size=13,
        seq_length=7,
        is_training=True,
        use_input_mask=True,
        use_token_type_ids=True,
        use_labels=True,
        vocab_size=128,  # the native tester's 99 rounded up to Nomic's pad_vocab_size_multiple (64), as the config does
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        type_vocab_size=2,
        max_position_embeddings=512,
        num_labels=3,
        type_sequence_label_size=2,
        initializer_range=0.02,
        pad_token_id=0,
    ):
        self.parent = parent
        self.batch_size = batch_size
        self.seq_length = seq_length
        self.is_training = is_training
        self.use_input_mask = use_input_mask
        self.use_token_type_ids = use_token_type_ids
        self.use_labels = use_labels
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.type_vocab_size = type_vocab_size
        self.max_position_embeddings = max_position_embeddings
        self.num_labels = num_labels
        self.type_sequence_label_size = type_sequence_label_size
        self.initializer_range = initializer_range
        self.pad_token_id = pad_token_id

    def get_config(self) -> NomicBertConfig:
        return NomicBertConfig(
            vocab_size=self.vocab_size,
            n_embd=self.hidden_size,
            n_layer=self.num_hidden_layers,
            n_head=self.num_attention_heads,
            n_inner=self.intermediate_size,
            type_vocab_size=self.type_vocab_size,
            n_positions=self.max_position_embeddings,
            max_trained_positions=self.max_position_embeddings,
            initializer_range=self.initializer_range,
            pad_token_id=self.pad_token_id,
            num_labels=self.num_labels,
        )

    def prepare_config_and_inputs(self):
        input_ids = ids_tensor([self.batch_size, self.seq_length], self.vocab_size)
        input_mask = random_attention_mask([self.batch_size, self.seq_length]) if self.use_input_mask else None
        token_type_ids = (
            ids_tensor([self.batch_size, self.seq_length], self.type_vocab_size) if self.use_token_type_ids else None
        )
        sequence_labels = token_labels = None
        if self.use_labels:
            sequence_labels = ids_tensor([self.batch_size], self.type_sequence_label_size)
            token_labels = ids_tensor([self.batch_size, self.seq_length], self.num_labels)
        return self.get_config(), input_ids, token_type_ids, input_mask, sequence_labels, token_labels

    def prepare_config_and_inputs_for_common(self):
        config, input_ids, token_type_ids, input_mask, *_ = self.prepare_config_and_inputs()
        return config, {"input_ids": input_ids, "token_type_ids": token_type_ids, "attention_mask": input_mask}

    # ------------------------------------------------------------------ per-head checks, as in test_modeling_bert

    def create_and_check_model(self, config, input_ids, token_type_ids, input_mask, *_):
        model = modeling.NomicBertModel(config).to(common.torch_device).eval()
        with torch.no_grad():
            result = model(input_ids, attention_mask=input_mask, token_type_ids=token_type_ids)
            model(input_ids, token_type_ids=token_type_ids)
            model(input_ids)
        self.parent.assertEqual(result.last_hidden_state.shape, (self.batch_size, self.seq_length, self.hidden_size))

    def create_and_check_for_masked_lm(self, config, input_ids, token_type_ids, input_mask, sequence_labels, labels):
        model = modeling.NomicBertForPreTraining(config).to(common.torch_device).eval()
        with torch.no_grad():
            result = model(input_ids, attention_mask=input_mask, token_type_ids=token_type_ids)
        self.parent.assertEqual(result.logits.shape, (self.batch_size, self.seq_length, self.vocab_size))
        labels[:, ::2] = -100  # config.dense_seq_output: with labels, only the other (masked) positions are decoded
        with torch.no_grad():
            result = model(input_ids, attention_mask=input_mask, token_type_ids=token_type_ids, labels=labels)
        self.parent.assertEqual(result.logits.shape, (int((labels != -100).sum()), self.vocab_size))
        self.parent.assertEqual(result.loss.shape, ())

    def create_and_check_for_sequence_classification(
        self, config, input_ids, token_type_ids, input_mask, sequence_labels, token_labels
    ):
        model = modeling.NomicBertForSequenceClassification(config).to(common.torch_device).eval()
        with torch.no_grad():
            result = model(input_ids, attention_mask=input_mask, token_type_ids=token_type_ids, labels=sequence_labels)
        self.parent.assertEqual(result.logits.shape, (self.batch_size, self.num_labels))

    def create_and_check_for_token_classification(
        self, config, input_ids, token_type_ids, input_mask, sequence_labels, token_labels
    ):
        model = modeling.NomicBertForTokenClassification(config).to(common.torch_device).eval()
        with torch.no_grad():
            result = model(input_ids, attention_mask=input_mask, token_type_ids=token_type_ids, labels=token_labels)
        self.parent.assertEqual(result.logits.shape, (self.batch_size, self.seq_length, self.num_labels))


class NomicBertModelTest(ModelTesterMixin, unittest.TestCase):
    all_model_classes = ALL_MODEL_CLASSES
    # The mixin runs this only for models it dates to 2023 or later (a "# Copyright <year>" line in the config file;
    # ours has none). The package defines `_init_weights` for every module, so hold it to the check.
    test_can_init_all_missing_weights_before_2023 = True

    def setUp(self):
        auto_classes = auto_classes_resolve_to_this_package()
        auto_classes.__enter__()
        self.addCleanup(auto_classes.__exit__, None, None, None)
        self.model_tester = NomicBertModelTester(self)
        # hidden_size 48 over the default 12 heads: head_dim 4 (the config rejects odd rotary dimensions).
        self.config_tester = ConfigTester(self, config_class=NomicBertConfig, hidden_size=48)

    def _prepare_for_class(self, inputs_dict, model_class, return_labels=False):
        inputs_dict = super()._prepare_for_class(inputs_dict, model_class, return_labels=return_labels)
        # The mixin picks label shapes by class name from transformers' auto mappings; our masked LM is named
        # NomicBertForPreTraining (NomicBertForMaskedLM is an alias), which no mapping lists.
        if return_labels and model_class in MASKED_LM_CLASSES:
            inputs_dict["labels"] = torch.zeros(
                (self.model_tester.batch_size, self.model_tester.seq_length), dtype=torch.long,
                device=common.torch_device,
            )
        return inputs_dict

    def test_config(self):
        self.config_tester.run_common_tests()

    def test_model(self):
        self.model_tester.create_and_check_model(*self.model_tester.prepare_config_and_inputs())

    def test_for_masked_lm(self):
        self.model_tester.create_and_check_for_masked_lm(*self.model_tester.prepare_config_and_inputs())

    def test_for_sequence_classification(self):
        self.model_tester.create_and_check_for_sequence_classification(*self.model_tester.prepare_config_and_inputs())

    def test_for_token_classification(self):
        self.model_tester.create_and_check_for_token_classification(*self.model_tester.prepare_config_and_inputs())

    # ------------------------------------------------------------------ tests that do not apply to NomicBERT

    @parameterized.expand([("linear",), ("dynamic",), ("yarn",)])  # the mixin's parameterisation, to override it
    @unittest.skip(reason=NO_ROPE_PARAMETERS)
    def test_model_rope_scaling_from_config(self, scaling_type):
        pass

    @unittest.skip(reason=NO_ROPE_PARAMETERS)
    def test_model_rope_scaling_frequencies(self):
        pass

    @unittest.skip(reason=NO_ROPE_PARAMETERS)
    def test_model_rope_with_partial_rotation(self):
        pass
