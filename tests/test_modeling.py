"""The model's behaviour on tiny configs: shapes per head, padding invariance, attention backends and their dispatch,
long inputs, and the transformers output contract (recorded outputs, inputs_embeds, position_ids, resizing)."""

import pytest
import torch
from conftest import random_ids, sharpen, tiny_config
from transformers import AutoModelForTokenClassification

from nomic_bert_hf import (
    NomicBertForPreTraining,
    NomicBertForSequenceClassification,
    NomicBertForTokenClassification,
    NomicBertModel,
)
from nomic_bert_hf import modeling_nomic_bert as modeling
from nomic_bert_hf.modeling_nomic_bert import apply_rotary, rotary_inv_freq
from nomic_bert_hf.utils.files import load_strict


def embed(model, ids, mask=None):
    with torch.no_grad():
        return model(ids, attention_mask=mask).last_hidden_state


def padded(sequences: list[torch.Tensor], side: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack 1-D id tensors into a batch padded with id 0 on `side`, and its attention mask."""
    length = max(len(s) for s in sequences)
    ids = torch.zeros(len(sequences), length, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, sequence in enumerate(sequences):
        span = slice(0, len(sequence)) if side == "right" else slice(length - len(sequence), length)
        ids[row, span], mask[row, span] = sequence, 1
    return ids, mask


def real_rows(output: torch.Tensor, mask: torch.Tensor, row: int) -> torch.Tensor:
    return output[row][mask[row].bool()]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return sharpen(NomicBertModel(tiny_config())).eval()


def test_shapes_of_every_head():
    torch.manual_seed(0)
    ids = random_ids(3, 9)
    assert NomicBertModel(tiny_config()).eval()(ids).last_hidden_state.shape == (3, 9, 32)
    mlm = NomicBertForPreTraining(tiny_config())
    assert mlm(ids).logits.shape == (3, 9, 30528)
    labels = torch.full_like(ids, -100)
    labels[0, 1], labels[2, 4] = 7, 9
    output = mlm(ids, labels=labels)
    assert output.logits.shape == (2, 30528) and output.loss.ndim == 0  # only masked positions are decoded
    classifier = NomicBertForSequenceClassification(tiny_config(num_labels=3))
    output = classifier(ids, labels=torch.tensor([0, 2, 1]))
    assert output.logits.shape == (3, 3) and torch.isfinite(output.loss)
    assert NomicBertModel(tiny_config())(ids, return_dict=False)[0].shape == (3, 9, 32)


def test_masked_only_loss_equals_the_dense_loss():
    torch.manual_seed(0)
    sparse = NomicBertForPreTraining(tiny_config()).eval()
    dense = NomicBertForPreTraining(tiny_config(dense_seq_output=False)).eval()
    dense.load_state_dict(sparse.state_dict())
    ids = random_ids(2, 16)
    labels = torch.where(torch.rand(ids.shape, generator=torch.Generator().manual_seed(1)) < 0.3, ids, -100)
    assert (labels != -100).sum() > 0
    torch.testing.assert_close(sparse(ids, labels=labels).loss, dense(ids, labels=labels).loss)
    full_logits = dense(ids, labels=labels).logits
    manual = torch.nn.functional.cross_entropy(full_logits.view(-1, 30528), labels.view(-1))
    torch.testing.assert_close(sparse(ids, labels=labels).loss, manual)


def test_decoder_is_tied_to_the_word_embeddings(tmp_path):
    model = NomicBertForPreTraining(tiny_config())
    assert model.cls.predictions.decoder.weight is model.bert.embeddings.word_embeddings.weight
    assert model.cls.predictions.decoder.bias is None
    model.save_pretrained(tmp_path)
    loaded = NomicBertForPreTraining.from_pretrained(tmp_path)
    assert loaded.cls.predictions.decoder.weight is loaded.bert.embeddings.word_embeddings.weight
    torch.testing.assert_close(loaded.cls.predictions.decoder.weight, model.cls.predictions.decoder.weight)


@pytest.mark.parametrize("side", ["right", "left"])
def test_padded_batch_equals_each_sequence_alone(model, side):
    sequences = [random_ids(1, n, seed=n)[0] for n in (5, 17, 11)]
    ids, mask = padded(sequences, side)
    batch = embed(model, ids, mask)
    for row, sequence in enumerate(sequences):
        torch.testing.assert_close(real_rows(batch, mask, row), embed(model, sequence[None])[0], atol=1e-5, rtol=0)
    assert (batch[~mask.bool()] == 0).all()


@pytest.mark.parametrize("side", ["right", "left"])
def test_eager_equals_sdpa(side):
    torch.manual_seed(0)
    sdpa = NomicBertModel(tiny_config(attn_implementation="sdpa")).eval()
    eager = NomicBertModel(tiny_config(attn_implementation="eager")).eval()
    eager.load_state_dict(sdpa.state_dict())
    assert (sdpa.config._attn_implementation, eager.config._attn_implementation) == ("sdpa", "eager")
    ids, mask = padded([random_ids(1, n, seed=n)[0] for n in (6, 13, 13)], side)
    torch.testing.assert_close(embed(eager, ids, mask), embed(sdpa, ids, mask), atol=1e-5, rtol=0)


def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    plain = NomicBertForPreTraining(tiny_config()).train()
    checkpointed = NomicBertForPreTraining(tiny_config()).train()
    checkpointed.load_state_dict(plain.state_dict())
    checkpointed.gradient_checkpointing_enable()
    assert all(layer.gradient_checkpointing for layer in checkpointed.bert.encoder.layers)
    ids, mask = padded([random_ids(1, n, seed=n)[0] for n in (9, 14)], "right")
    labels = torch.where(mask.bool(), ids, -100)
    for model in (plain, checkpointed):
        model(ids, attention_mask=mask, labels=labels).loss.backward()
    for (name, a), (_, b) in zip(plain.named_parameters(), checkpointed.named_parameters()):
        torch.testing.assert_close(a.grad, b.grad, msg=name)


def test_partial_rotary_rotates_only_the_leading_dimensions():
    """`rotary_emb_fraction` < 1: the first rotary_dim features of each head rotate (half split), the rest pass."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(5, 2, 8, generator=generator)  # (tokens, heads, head_dim)
    angles = torch.randn(5, 2, generator=generator)  # rotary_dim 4: one angle per (i, i + 2) pair
    rotated = apply_rotary(x, angles.cos(), angles.sin())
    torch.testing.assert_close(rotated[..., 4:], x[..., 4:], atol=0, rtol=0)
    first, second = x[..., :2], x[..., 2:4]
    cos, sin = angles.repeat(1, 2).cos(), angles.repeat(1, 2).sin()  # tiled [a, a] as transformers' tables are
    expected = torch.cat((first, second), -1) * cos[:, None] + torch.cat((-second, first), -1) * sin[:, None]
    torch.testing.assert_close(rotated[..., :4], expected)
    norms = rotated[..., :4].reshape(5, 2, 2, 2).pow(2).sum(2)  # each (i, i + 2) pair is rotated: lengths kept
    torch.testing.assert_close(norms, x[..., :4].reshape(5, 2, 2, 2).pow(2).sum(2))


def test_ntk_base_follows_the_formula():
    config = tiny_config(n_embd=768, n_head=12, rotary_scaling_factor=2.0)
    for length, base in [(2048, 1000.0), (4096, 3108.0), (8192, 7453.0)]:  # values from Nomic's formula, d = 64
        assert rotary_inv_freq(config, torch.tensor(length))[1].item() == pytest.approx(base ** (-2 / 64), rel=1e-3)


@pytest.mark.parametrize("length", [4096, 8192])
def test_dynamic_ntk_beyond_the_trained_length(model, length):
    ids = random_ids(1, length)
    scaled = embed(model, ids)
    assert torch.isfinite(scaled).all()
    unscaled = NomicBertModel(tiny_config(rotary_scaling_factor=None)).eval()
    unscaled.load_state_dict(model.state_dict())
    assert (embed(unscaled, ids) - scaled).abs().max() > 1e-3  # the scaling is really applied above 2048
    short = random_ids(1, 2048)
    torch.testing.assert_close(embed(unscaled, short), embed(model, short))  # and not at or below it


def test_output_does_not_depend_on_earlier_calls_or_batch_mates(model):
    text, long_text = random_ids(1, 40, seed=1)[0], random_ids(1, 3000, seed=2)[0]
    alone = embed(model, text[None])
    embed(model, long_text[None])  # a longer call in between must leave no state behind
    torch.testing.assert_close(embed(model, text[None]), alone, atol=0, rtol=0)
    ids, mask = padded([long_text, text], "right")
    torch.testing.assert_close(real_rows(embed(model, ids, mask), mask, 1), alone[0], atol=1e-5, rtol=0)


def test_inputs_longer_than_n_positions_are_rejected():
    model = NomicBertModel(tiny_config(n_positions=2048))
    with pytest.raises(ValueError, match="n_positions = 2048"):
        model(random_ids(1, 2049))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_with_fully_padded_rows_is_finite(model, dtype):
    half = NomicBertModel(tiny_config()).eval().to(dtype)
    half.load_state_dict(model.state_dict())
    ids, mask = padded([random_ids(1, 12)[0], torch.zeros(0, dtype=torch.long), random_ids(1, 3)[0]], "right")
    output = embed(half, ids, mask)
    assert output.dtype == dtype and torch.isfinite(output).all()
    torch.testing.assert_close(real_rows(output, mask, 0).float(), real_rows(embed(model, ids, mask), mask, 0),
                               atol=0.1, rtol=0.05)


def test_hidden_states_are_returned_padded(model):
    ids, mask = padded([random_ids(1, 4)[0], random_ids(1, 7)[0]], "left")
    with torch.no_grad():
        output = model(ids, attention_mask=mask, output_hidden_states=True)
    assert len(output.hidden_states) == 3 and output.hidden_states[-1].shape == (2, 7, 32)
    torch.testing.assert_close(output.hidden_states[-1], output.last_hidden_state)


def test_classifier_pools_the_first_real_token_on_either_side():
    torch.manual_seed(0)
    classifier = NomicBertForSequenceClassification(tiny_config(num_labels=2)).eval()
    sequences = [random_ids(1, 6)[0], random_ids(1, 10, seed=3)[0]]
    with torch.no_grad():
        right = classifier(*padded(sequences, "right")).logits
        left = classifier(*padded(sequences, "left")).logits
    torch.testing.assert_close(right, left, atol=1e-5, rtol=0)


def test_flattened_batches_with_sequence_offsets(model):
    """sentence-transformers sends flash-attention users one flattened row plus `cu_seq_lens_q` offsets."""
    sequences = [random_ids(1, n, seed=n)[0] for n in (5, 12, 3)]
    flat = torch.cat(sequences)[None]
    offsets = torch.tensor([0, 5, 17, 20], dtype=torch.int32)
    positions = torch.cat([torch.arange(len(s)) for s in sequences])[None]
    with torch.no_grad():
        output = model(flat, position_ids=positions, cu_seq_lens_q=offsets, cu_seq_lens_k=offsets).last_hidden_state
    assert output.shape == (1, 20, 32)
    for sequence, start in zip(sequences, (0, 5, 17)):
        torch.testing.assert_close(output[0, start : start + len(sequence)], embed(model, sequence[None])[0],
                                   atol=1e-5, rtol=0)


def test_one_long_text_among_many_short_ones(model):
    sequences = [random_ids(1, 2500, seed=7)[0]] + [random_ids(1, n, seed=n)[0] for n in (3, 9, 30, 64, 17)]
    ids, mask = padded(sequences, "right")
    batch = embed(model, ids, mask)
    for row, sequence in enumerate(sequences):
        torch.testing.assert_close(real_rows(batch, mask, row), embed(model, sequence[None])[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "implementation, device, dtype, equal, dropout, head_dim, capability, kernel",
    [
        ("sdpa", "cpu", torch.float32, False, 0.0, 64, None, "per_sequence"),
        ("eager", "cpu", torch.float32, False, 0.0, 64, None, "per_sequence"),
        ("sdpa", "cpu", torch.float32, True, 0.0, 64, None, "batched"),
        ("sdpa", "cuda", torch.bfloat16, False, 0.0, 64, (9, 0), "varlen_attn"),
        ("sdpa", "cuda", torch.float16, False, 0.0, 64, (8, 0), "varlen_attn"),
        ("sdpa", "cuda", torch.float16, False, 0.0, 64, (7, 5), "masked"),  # T4: no flash kernel before sm80
        ("sdpa", "cuda", torch.float32, False, 0.0, 64, (9, 0), "masked"),  # flash kernels need half precision
        ("sdpa", "cuda", torch.bfloat16, False, 0.1, 64, (9, 0), "masked"),  # varlen_attn has no dropout
        ("sdpa", "cuda", torch.bfloat16, False, 0.0, 12, (9, 0), "masked"),  # head_dim not a multiple of 8
        ("eager", "cuda", torch.bfloat16, False, 0.0, 64, (9, 0), "masked"),
        ("sdpa", "mps", torch.float16, False, 0.0, 64, None, "masked"),
        ("flash_attention_2", "cuda", torch.bfloat16, False, 0.0, 64, (9, 0), "flash_interface"),
        ("sdpa", "cuda", torch.bfloat16, True, 0.0, 64, (9, 0), "batched"),
    ],
)
def test_attention_kernel_dispatch(monkeypatch, implementation, device, dtype, equal, dropout, head_dim, capability,
                                   kernel):
    """Which kernel a packed batch uses: never a loop over sequences on an accelerator."""
    monkeypatch.setattr(modeling, "varlen_attn", object())  # as where torch ships it (>= 2.9)
    monkeypatch.setattr(modeling, "flash_capable", lambda device: capability >= (8, 0))
    chosen = modeling.packed_attention_kernel(implementation, torch.device(device), dtype, equal, dropout, head_dim)
    assert chosen == kernel


@pytest.mark.parametrize("kernel", ["masked", "varlen_attn"])
def test_accelerator_kernels_agree_with_the_per_sequence_kernel(model, monkeypatch, kernel):
    """The kernels chosen on an accelerator, run here on CPU (varlen_attn through a stand-in with its signature that
    attends within each sequence, since its flash kernel needs CUDA), against one call per sequence."""
    ids, mask = padded([random_ids(1, n, seed=n)[0] for n in (5, 17, 0, 11)], "left")
    expected = embed(model, ids, mask)
    if kernel == "varlen_attn":
        def varlen_reference(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, *, scale=None):
            assert torch.equal(cu_seq_q, cu_seq_k) and cu_seq_q.dtype == torch.int32 and max_q == max_k == 17
            lengths = cu_seq_q.diff().tolist()
            return torch.cat([
                torch.nn.functional.scaled_dot_product_attention(
                    q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1), scale=scale).transpose(0, 1)
                for q, k, v in zip(query.split(lengths), key.split(lengths), value.split(lengths))
            ])
        monkeypatch.setattr(modeling, "varlen_attn", varlen_reference)
    monkeypatch.setattr(modeling, "packed_attention_kernel", lambda *args: kernel)
    torch.testing.assert_close(embed(model, ids, mask), expected, atol=1e-5, rtol=0)


def test_attention_probabilities_are_recorded(model):
    eager = NomicBertModel(tiny_config(attn_implementation="eager")).eval()
    eager.load_state_dict(model.state_dict())
    ids, mask = padded([random_ids(1, 4)[0], random_ids(1, 7)[0]], "right")
    with torch.no_grad():
        output = eager(ids, attention_mask=mask, output_attentions=True)
    assert len(output.attentions) == 2 and output.attentions[0].shape == (2, 4, 7, 7)
    probabilities = output.attentions[1]
    torch.testing.assert_close(probabilities.sum(-1), torch.ones(2, 4, 7))
    assert (probabilities[0, :, :, 4:] == 0).all()  # no weight on the first row's padding
    torch.testing.assert_close(output.last_hidden_state, embed(model, ids, mask), atol=1e-5, rtol=0)
    with torch.no_grad():  # an sdpa model records them too, from the eager kernel for that call
        sdpa = model(ids, attention_mask=mask, output_attentions=True).attentions
    torch.testing.assert_close(sdpa, output.attentions)


def test_recorded_hidden_states_match_the_unrecorded_run(model):
    ids, mask = padded([random_ids(1, 9)[0], random_ids(1, 3)[0]], "left")
    with torch.no_grad():
        output = model(ids, attention_mask=mask, output_hidden_states=True)
        first = model.emb_ln(model.embeddings(ids))
    assert len(output.hidden_states) == 3
    torch.testing.assert_close(output.hidden_states[0], first)
    torch.testing.assert_close(output.last_hidden_state, embed(model, ids, mask), atol=1e-5, rtol=0)


def test_float_masks_and_int32_positions_are_read_as_given(model):
    ids, mask = padded([random_ids(1, 9)[0], random_ids(1, 4)[0]], "left")
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    with torch.no_grad():
        output = model(ids, attention_mask=mask.float(), position_ids=positions.int()).last_hidden_state
    torch.testing.assert_close(output, embed(model, ids, mask), atol=1e-5, rtol=0)


def test_flattened_batches_cannot_record_outputs(model):
    offsets = torch.tensor([0, 5, 9], dtype=torch.int32)
    with pytest.raises(ValueError, match="flattened batch"):
        model(random_ids(1, 9), cu_seq_lens_q=offsets, output_hidden_states=True)


def test_rows_without_tokens_pool_zeros():
    torch.manual_seed(0)
    classifier = NomicBertForSequenceClassification(tiny_config(num_labels=2)).eval()
    ids, mask = random_ids(2, 5), torch.zeros(2, 5, dtype=torch.long)
    with torch.no_grad():
        expected = classifier.classifier(torch.tanh(classifier.bert.pooler.dense.bias)).expand(2, -1)
        torch.testing.assert_close(classifier(ids, attention_mask=mask).logits, expected)
        torch.testing.assert_close(classifier(ids, attention_mask=mask, output_hidden_states=True).logits, expected)


def test_inputs_embeds_replace_the_word_embeddings(model):
    ids, mask = padded([random_ids(1, 9)[0], random_ids(1, 4)[0]], "right")
    with torch.no_grad():
        from_embeds = model(inputs_embeds=model.get_input_embeddings()(ids), attention_mask=mask).last_hidden_state
    torch.testing.assert_close(from_embeds, embed(model, ids, mask), atol=0, rtol=0)
    with pytest.raises(ValueError, match="exactly one of input_ids and inputs_embeds.*both"):
        model(ids, inputs_embeds=model.get_input_embeddings()(ids))
    with pytest.raises(ValueError, match="neither"):
        model(attention_mask=mask)


@pytest.mark.parametrize("side", ["right", "left"])
def test_position_ids_are_honoured(model, side):
    ids, mask = padded([random_ids(1, 9)[0], random_ids(1, 4)[0]], side)
    restart = (mask.cumsum(1) - 1).clamp(min=0)
    with torch.no_grad():
        default = embed(model, ids, mask)
        explicit = model(ids, attention_mask=mask, position_ids=restart).last_hidden_state
        shifted = model(ids, attention_mask=mask, position_ids=restart + 5).last_hidden_state
        spread = model(ids, attention_mask=mask, position_ids=restart * 2).last_hidden_state
    torch.testing.assert_close(explicit, default, atol=1e-5, rtol=0)
    torch.testing.assert_close(shifted, default, atol=1e-5, rtol=0)  # rotary attention sees relative positions
    assert (spread - default)[mask.bool()].abs().max() > 1e-3


def test_position_ids_set_the_ntk_length():
    """A sequence whose positions reach beyond the trained length is scaled as a sequence of that length."""
    torch.manual_seed(0)
    model = sharpen(NomicBertModel(tiny_config(max_trained_positions=32))).eval()
    ids = random_ids(1, 10)
    far = torch.arange(40, 50)[None]  # positions up to 49: the base of a 50-token sequence
    with torch.no_grad():
        scaled = model(ids, position_ids=far).last_hidden_state
        unscaled_model = NomicBertModel(tiny_config(max_trained_positions=32, rotary_scaling_factor=None)).eval()
        unscaled_model.load_state_dict(model.state_dict())
        unscaled = unscaled_model(ids, position_ids=far).last_hidden_state
        recorded = model(ids, position_ids=far, output_hidden_states=True).last_hidden_state  # padded route
    assert (scaled - unscaled).abs().max() > 1e-3
    torch.testing.assert_close(recorded, scaled, atol=1e-5, rtol=0)


@pytest.mark.parametrize("size, pad_to_multiple_of, kept", [(30600, None, 30600), (30601, None, 30601),
                                                          (30600, 64, 30656), (30528, None, 30528)])
def test_resized_vocabulary_round_trips(tmp_path, size, pad_to_multiple_of, kept):
    torch.manual_seed(0)
    model = NomicBertForPreTraining(tiny_config()).eval()
    model.resize_token_embeddings(size, pad_to_multiple_of=pad_to_multiple_of)
    assert model.get_input_embeddings().num_embeddings == model.config.vocab_size == kept
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    assert kept % model.config.pad_vocab_size_multiple == 0  # the config's rounding keeps the size at reload
    model.save_pretrained(tmp_path)
    ids = random_ids(2, 6)
    ids[0, 0] = kept - 1  # a new token
    reloaded = load_strict(NomicBertForPreTraining, tmp_path).eval()  # strict: every weight found, none resized
    assert reloaded.config.vocab_size == kept
    with torch.no_grad():
        torch.testing.assert_close(reloaded(ids).logits, model(ids).logits)


def test_token_classification_labels_every_real_token(tmp_path):
    torch.manual_seed(0)
    tagger = NomicBertForTokenClassification(tiny_config(num_labels=5)).eval()
    sequences = [random_ids(1, 6)[0], random_ids(1, 10, seed=3)[0]]
    right_ids, right_mask = padded(sequences, "right")
    left_ids, left_mask = padded(sequences, "left")
    labels = torch.where(right_mask.bool(), torch.randint(0, 5, right_ids.shape), -100)
    with torch.no_grad():
        right = tagger(right_ids, attention_mask=right_mask, labels=labels)
        left = tagger(left_ids, attention_mask=left_mask).logits
    assert right.logits.shape == (2, 10, 5)
    torch.testing.assert_close(right.logits[right_mask.bool()], left[left_mask.bool()], atol=1e-5, rtol=0)
    expected = torch.nn.functional.cross_entropy(right.logits.view(-1, 5), labels.view(-1))
    torch.testing.assert_close(right.loss, expected)
    tagger.save_pretrained(tmp_path)
    reloaded = AutoModelForTokenClassification.from_pretrained(tmp_path, trust_remote_code=True)
    assert type(reloaded).__name__ == "NomicBertForTokenClassification"


def test_weights_are_initialised_as_nomic_does():
    model = NomicBertForSequenceClassification(tiny_config(initializer_range=0.2, num_labels=2))
    weight = model.bert.encoder.layers[0].mlp.fc11.weight
    assert 0.18 < weight.std().item() < 0.22 and abs(weight.mean().item()) < 0.02
    assert (model.bert.emb_ln.weight == 1).all() and (model.bert.emb_ln.bias == 0).all()
    assert (model.classifier.bias == 0).all() and 0.1 < model.classifier.weight.std().item() < 0.3


def test_cpu_groups_of_sequences_give_each_sequence_alone(model):
    """On CPU the packed route runs groups of consecutive sequences of at most `cpu_working_tokens` tokens (fp32)."""
    lengths = [600, 500, 300, 700, 5]
    layout = modeling.PackedSequences.from_lengths(torch.tensor(lengths))
    groups = list(layout.groups(modeling.cpu_working_tokens(torch.float32)))
    assert [group.lengths for _, group in groups] == [[600], [500, 300], [700, 5]]
    assert [(span.start, span.stop) for span, _ in groups] == [(0, 600), (600, 1400), (1400, 2105)]
    sequences = [random_ids(1, n, seed=n)[0] for n in lengths]
    ids, mask = padded(sequences, "right")
    batch = embed(model, ids, mask)
    for row, sequence in enumerate(sequences):
        torch.testing.assert_close(real_rows(batch, mask, row), embed(model, sequence[None])[0], atol=1e-5, rtol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="varlen_attn's flash kernel runs on CUDA only")
def test_gpu_packed_batches_match_the_cpu_model_within_bf16_error(model):
    gpu = NomicBertModel(tiny_config()).eval()
    gpu.load_state_dict(model.state_dict())
    gpu.to("cuda", torch.bfloat16)
    device = torch.device("cuda")
    expected_kernel = "varlen_attn" if modeling.flash_capable(device) else "masked"
    assert modeling.packed_attention_kernel("sdpa", device, torch.bfloat16, False, 0.0, 8) == expected_kernel
    ids, mask = padded([random_ids(1, n, seed=n)[0] for n in (5, 300, 0, 2500)], "left")
    with torch.no_grad():
        output = gpu(ids.cuda(), attention_mask=mask.cuda()).last_hidden_state.float().cpu()
    torch.testing.assert_close(output, embed(model, ids, mask), atol=0.1, rtol=0.05)
