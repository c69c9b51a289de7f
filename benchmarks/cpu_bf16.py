"""bf16 against fp32 on this CPU, in one run: the matmul peak, inference and training of the 137M architecture and of
the pipeline's embedder.

    python benchmarks/cpu_bf16.py                                   # every section (about 25 minutes on 2 cores)
    python benchmarks/cpu_bf16.py --sections matmul inference --lengths 128 512 --no-compile

1. Matmul peak: a (2048 x 768) by (768 x 3072) matmul (the MLP's first projection at 2048 tokens) in fp32 and bf16,
   GFLOP/s, best of `--repeats`.
2. Inference: tokens/s of a no-grad forward pass of NomicBertModel (random weights, random token ids, one batch of
   about `--batch_tokens` tokens per length) in fp32, in bf16 (`model.to(torch.bfloat16)`, the same as loading with
   `dtype=torch.bfloat16`) and in bf16 under `torch.compile` (inductor), with the fraction of the same dtype's matmul
   peak each reaches (model FLOPs as in `benchmarks/gpu.py`: 2 x linear weights + 4 x layers x length x hidden per
   token), and the lowest cosine of bf16's mean-pooled outputs to fp32's.
3. Training: tokens/s of one optimizer step of stage 1 (MLM, 30% masked, 128 tokens) and stage 2 (InfoNCE over
   in-batch negatives with GradCache, as `training/configs/contrastive/cpu-pretrain.yaml`), fp32 against bf16
   autocast (what `bf16: true` gives the Trainer on CPU).

Every table names the CPU, its vector capability and its bf16 matrix units. Prints markdown and writes it, with
every timing as JSON, to `--output`.
"""

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from gpu import flops_per_token

from nomic_bert_hf import NomicBertConfig, NomicBertForPreTraining, NomicBertModel
from nomic_bert_hf.model.embedder import build_embedder
from nomic_bert_hf.model.tokenization import bert_uncased_tokenizer, save_tokenizer
from nomic_bert_hf.training.contrastive import contrastive_loss
from nomic_bert_hf.utils.compute import describe

ROOT = Path(__file__).resolve().parents[1]
SIZES = {"137m": {}, "pipeline": {"n_embd": 256, "n_layer": 4, "n_head": 4, "n_inner": 1024}}
SECTIONS = ("matmul", "inference", "training")


def best_seconds(call, repeats: int) -> float:
    """The median wall time of `repeats` calls, after one warm-up call."""
    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_peak(repeats: int) -> dict[str, float]:
    """GFLOP/s of the MLP-shaped matmul in each dtype (best of `repeats`)."""
    peaks = {}
    for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        a, b = torch.randn(2048, 768, dtype=dtype), torch.randn(768, 3072, dtype=dtype)
        a @ b
        times = []
        for _ in range(max(repeats, 5)):
            start = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - start)
        peaks[name] = 2 * 2048 * 768 * 3072 / min(times) / 1e9
    return peaks


def make_model(size: str, model_class=NomicBertModel):
    torch.manual_seed(0)
    return model_class(NomicBertConfig(**SIZES[size])).eval()


def batch(config: NomicBertConfig, length: int, batch_tokens: int) -> dict[str, torch.Tensor]:
    texts = max(1, batch_tokens // length)
    generator = torch.Generator().manual_seed(length)
    ids = torch.randint(1000, config.vocab_size, (texts, length), generator=generator)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def mean_pooled(model, inputs) -> torch.Tensor:
    with torch.inference_mode():
        return model(**inputs).last_hidden_state.float().mean(dim=1)


def inference(size: str, lengths: list[int], batch_tokens: int, repeats: int, compile_: bool, peaks: dict) -> list:
    fp32 = make_model(size)
    bf16 = make_model(size).to(torch.bfloat16)
    variants = {"float32": fp32, "bfloat16": bf16}
    if compile_:
        variants["bfloat16 compiled"] = torch.compile(bf16)
    rows = []
    for length in lengths:
        inputs = batch(fp32.config, length, batch_tokens)
        tokens = inputs["input_ids"].numel()
        reference = mean_pooled(fp32, inputs)
        row = {"size": size, "length": length, "texts": inputs["input_ids"].shape[0]}
        for name, model in variants.items():
            seconds = best_seconds(lambda model=model, inputs=inputs: mean_pooled(model, inputs), repeats)
            peak = peaks.get("bfloat16" if name.startswith("bfloat16") else "float32")
            flops = flops_per_token(fp32.config, length, 0.0) * tokens / seconds
            row[name] = {"tokens_per_s": tokens / seconds, "fraction_of_peak": flops / (peak * 1e9) if peak else None}
            if name != "float32":
                row[name]["lowest_cosine"] = float(F.cosine_similarity(mean_pooled(model, inputs), reference).min())
        rows.append(row)
        print(f"  {size} {length} tokens: " + ", ".join(
            f"{name} {row[name]['tokens_per_s']:.0f} tok/s" for name in variants), flush=True)
    return rows


def mlm_step(size: str, bf16: bool, repeats: int, length: int = 128, texts: int = 32) -> float:
    """Training tokens/s of one MLM step (forward, backward, AdamW)."""
    model = make_model(size, NomicBertForPreTraining).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    inputs = batch(model.config, length, length * texts)
    labels = inputs["input_ids"].masked_fill(torch.rand(inputs["input_ids"].shape) > 0.3, -100)

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(**inputs, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    return length * texts / best_seconds(step, repeats)


def contrastive_step(size: str, bf16: bool, repeats: int, length: int = 128, pairs: int = 128) -> float:
    """Training tokens/s of one stage-2 step: InfoNCE with GradCache in chunks of 32 rows (the CPU config's)."""
    with tempfile.TemporaryDirectory() as folder:
        make_model(size).save_pretrained(folder)
        save_tokenizer(bert_uncased_tokenizer(), folder)
        model = build_embedder(folder, max_seq_length=length).train()
    loss = contrastive_loss(model, mini_batch_size=32)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    config = model[0].auto_model.config
    queries, documents = batch(config, length, length * pairs), batch(config, length + 1, (length + 1) * pairs)

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            value = loss([dict(queries), dict(documents)], None)
        value.backward()
        optimizer.step()
        optimizer.zero_grad()

    return (2 * length + 1) * pairs / best_seconds(step, repeats)


def markdown(hardware: str, peaks: dict, inference_rows: list, training_rows: list) -> str:
    lines = [f"CPU: {hardware}, torch {torch.__version__}"]
    if peaks:
        lines += ["", "| matmul 2048x768 @ 768x3072 | GFLOP/s |", "|---|---|",
                  *(f"| {name} | {value:,.0f} |" for name, value in peaks.items()),
                  f"| bf16 / fp32 | {peaks['bfloat16'] / peaks['float32']:.2f}x |"]
    if inference_rows:
        variants = [key for key in inference_rows[0] if key not in ("size", "length", "texts")]
        header = " | ".join(f"{name} tok/s (of peak)" for name in variants)
        lines += ["", f"| model | tokens | texts | {header} | " + " | ".join(
            f"{name} / fp32 | cosine {name}" for name in variants[1:]) + " |",
            "|---" * (3 + len(variants) + 2 * (len(variants) - 1)) + "|"]
        for row in inference_rows:
            cells = [f"{row[name]['tokens_per_s']:,.0f} ({row[name]['fraction_of_peak']:.0%})" for name in variants]
            cells += [cell for name in variants[1:] for cell in (
                f"{row[name]['tokens_per_s'] / row['float32']['tokens_per_s']:.2f}x",
                f"{row[name]['lowest_cosine']:.5f}")]
            lines.append(f"| {row['size']} | {row['length']} | {row['texts']} | " + " | ".join(cells) + " |")
    if training_rows:
        lines += ["", "| training step | model | fp32 tok/s | bf16 autocast tok/s | bf16 / fp32 |", "|---|---|---|---|---|"]
        lines += [f"| {row['stage']} | {row['size']} | {row['float32']:,.0f} | {row['bfloat16']:,.0f} | "
                  f"{row['bfloat16'] / row['float32']:.2f}x |" for row in training_rows]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES), default=list(SIZES))
    parser.add_argument("--lengths", nargs="+", type=int, default=[128, 512, 2048, 8192])
    parser.add_argument("--batch_tokens", type=int, default=8192, help="tokens per inference batch")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-compile", dest="compile", action="store_false", help="skip the compiled bf16 column")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "cpu_bf16.json")
    args = parser.parse_args()

    # 1. The hardware and its matmul peak per dtype
    hardware = describe("cpu")
    print(f"CPU: {hardware}", flush=True)
    peaks = matmul_peak(args.repeats) if "matmul" in args.sections else {}

    # 2. Inference per length: fp32, bf16, bf16 compiled
    inference_rows = [row for size in args.sizes for row in (
        inference(size, args.lengths, args.batch_tokens, args.repeats, args.compile, peaks)
        if "inference" in args.sections else [])]

    # 3. Training steps of stages 1 and 2, fp32 against bf16 autocast
    training_rows = []
    if "training" in args.sections:
        for size in args.sizes:
            for stage, step in (("stage 1 MLM", mlm_step), ("stage 2 contrastive", contrastive_step)):
                row = {"stage": stage, "size": size, **{name: step(size, name == "bfloat16", args.repeats)
                                                         for name in ("float32", "bfloat16")}}
                training_rows.append(row)
                print(f"  {stage} {size}: fp32 {row['float32']:.0f}, bf16 {row['bfloat16']:.0f} tok/s", flush=True)

    # 4. Report
    table = markdown(hardware, peaks, inference_rows, training_rows)
    print(f"\n{table}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"hardware": hardware, "torch": torch.__version__, "matmul_gflops": peaks,
                                       "inference": inference_rows, "training": training_rows}, indent=2) + "\n")
    args.output.with_suffix(".md").write_text(table)


if __name__ == "__main__":
    main()
