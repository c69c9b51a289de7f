"""GPU throughput and model FLOPs utilisation (MFU): this package's NomicBERT beside transformers' native class.

    python benchmarks/gpu.py                                   # on a CUDA machine: about 5 minutes on one H100/H200
    python benchmarks/gpu.py --device cpu --size tiny --train_batch 2 --train_length 128 --infer_batch 1 \\
        --infer_length 512 --varlen_texts 4 --varlen_length 256 --steps 1 --no_compile   # a smoke run of the script

Three workloads, each for this package and for transformers' native `NomicBertForMaskedLM` / `NomicBertModel` with the
same weights, with every attention implementation available (`sdpa`, and `flash_attention_2` where flash-attn is
installed) and `torch.compile` off and on:

1. MLM training at 2048 tokens (the recipe's packed sequences, 30% masking; as in `mlm_throughput.py`): bf16 autocast
   over fp32 weights (the Trainer's `bf16: true`), fused AdamW; a step is forward, backward and optimizer step.
2. Inference at 8192 tokens: bf16 weights, one forward pass without a padding mask (the native class's fastest path).
3. Inference on a padded batch of unequal lengths (`--varlen_texts` random lengths up to `--varlen_length`, bf16):
   the packed route's attention kernel (PyTorch's `varlen_attn` with sdpa on CUDA, no extra package), reported by
   name, and both implementations' outputs against this package's CPU fp32 output on the same batch (largest
   absolute difference over real tokens, lowest cosine of mean-pooled embeddings): bf16 error, no more.

MFU is the model's own FLOPs per second over the device's peak dense bf16 FLOPs. Model FLOPs per token: 2 x the
encoder's linear weights + 4 x layers x length x hidden (attention scores and weighted sum, no causal mask), and for
MLM the prediction head on the masked 30% only (2 x (hidden^2 + hidden x vocab)); a training step counts 3 x the
forward pass. The same count is used for both implementations, so the native head's decoding of unmasked tokens is
work that earns it nothing. Prints a table, writes JSON (`--output`).
"""

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import transformers
import yaml
from mlm_throughput import ARCHITECTURE, CONFIGS, build_models, make_batches
from transformers.utils import is_flash_attn_2_available

from nomic_bert_hf import NomicBertConfig, NomicBertModel
from nomic_bert_hf.modeling_nomic_bert import packed_attention_kernel

ROOT = Path(__file__).resolve().parents[1]
SIZES = {"137m": "nomic-bert-2048.yaml", "tiny": "tiny.yaml"}
# Peak dense bf16 tensor-core TFLOP/s by device name (SXM parts; pass --peak_tflops for others).
PEAK_TFLOPS = {"H200": 989.4, "H100": 989.4, "A100": 312.0, "L40S": 362.1, "L4": 121.0, "B200": 2250.0}


def flops_per_token(config: NomicBertConfig, length: int, decoded_fraction: float) -> float:
    """Forward FLOPs per token of the encoder at `length` tokens, plus the MLM head on `decoded_fraction` of tokens."""
    h, layers = config.n_embd, config.n_layer
    linear = layers * (4 * h * h + 3 * h * config.n_inner)
    head = h * h + h * config.vocab_size
    return 2 * linear + 4 * layers * length * h + 2 * head * decoded_fraction


def peak_flops(device: torch.device, override: float | None) -> float | None:
    if override:
        return override * 1e12
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((tflops * 1e12 for key, tflops in PEAK_TFLOPS.items() if key in name), None)


def synchronize(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(step, device: torch.device, warmup: int, steps: int) -> float:
    """Seconds per call of `step()` after `warmup` untimed calls (compilation happens there)."""
    for _ in range(warmup):
        step()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return (time.perf_counter() - start) / steps


def prepare(model, attention: str, compile_model: bool, device: torch.device):
    model.set_attn_implementation(attention)
    model.to(device)
    return torch.compile(model) if compile_model else model


def training_case(models: dict, name: str, attention: str, compile_model: bool, args, device) -> dict:
    model = prepare(models[name], attention, compile_model, device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=device.type == "cuda")
    batches = [{key: value.to(device) for key, value in batch.items()} for batch in models["batches"]]
    autocast = torch.autocast(device.type, dtype=torch.bfloat16)
    position = [0]

    def step():
        batch = batches[position[0] % len(batches)]
        position[0] += 1
        with autocast:
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    seconds = timed(step, device, args.warmup, args.steps)
    tokens = args.train_batch * args.train_length
    return {"seconds_per_step": seconds, "tokens_per_s": tokens / seconds,
            "model_flops_per_s": 3 * flops_per_token(models["config"], args.train_length, 0.3) * tokens / seconds}


def inference_case(models: dict, name: str, attention: str, compile_model: bool, args, device) -> dict:
    model = prepare(models[name], attention, compile_model, device).eval().to(torch.bfloat16)
    ids = torch.randint(1000, 20000, (args.infer_batch, args.infer_length), generator=torch.Generator().manual_seed(0))
    ids = ids.to(device)

    def step():
        with torch.inference_mode():
            model(ids)

    seconds = timed(step, device, args.warmup, args.steps)
    tokens = ids.numel()
    return {"seconds_per_step": seconds, "tokens_per_s": tokens / seconds,
            "model_flops_per_s": flops_per_token(models["config"], args.infer_length, 0.0) * tokens / seconds}


def varlen_case(models: dict, name: str, attention: str, compile_model: bool, args, device) -> dict:
    model = prepare(models[name], attention, compile_model, device).eval().to(torch.bfloat16)
    ids, mask = (tensor.to(device) for tensor in models["batch"])

    def step():
        with torch.inference_mode():
            return model(ids, attention_mask=mask).last_hidden_state

    seconds = timed(step, device, args.warmup, args.steps)
    tokens = int(mask.sum())
    output, reference = step().float().cpu(), models["reference"]
    real = mask.bool().cpu()
    pooled, expected = (F.normalize((x * real[..., None]).sum(1), dim=-1) for x in (output, reference))
    if name == "native":
        kernel = f"padded {attention}"
    elif compile_model:
        kernel = f"padded {attention} (graph route)"
    else:
        kernel = packed_attention_kernel(attention, device, torch.bfloat16, equal_lengths=False, dropout=0.0)
    mean_length = int(mask.sum(1).float().mean())  # attention FLOPs counted at the mean length
    return {"seconds_per_step": seconds, "tokens_per_s": tokens / seconds, "kernel": kernel,
            "model_flops_per_s": flops_per_token(models["config"], mean_length, 0.0) * tokens / seconds,
            "max_abs_diff_vs_cpu_fp32": (output - reference)[real].abs().max().item(),
            "min_cosine_vs_cpu_fp32": (pooled * expected).sum(-1).min().item()}


def varlen_models(args, workdir: Path) -> dict:
    """`inference_models`, a batch of unequal lengths and this package's CPU fp32 output on it (computed once)."""
    models = inference_models(args, workdir)
    if "reference" not in VARLEN_REFERENCE:
        generator = torch.Generator().manual_seed(0)
        lengths = torch.randint(args.varlen_length // 16, args.varlen_length + 1, (args.varlen_texts,),
                                generator=generator)
        ids = torch.randint(1000, 20000, (args.varlen_texts, int(lengths.max())), generator=generator)
        mask = (torch.arange(ids.shape[1])[None] < lengths[:, None]).long()
        with torch.inference_mode():
            reference = models["ours"](ids, attention_mask=mask).last_hidden_state
        VARLEN_REFERENCE.update(batch=(ids, mask), reference=reference)
    return {**models, **VARLEN_REFERENCE}


VARLEN_REFERENCE = {}


def training_models(args, workdir: Path) -> dict:
    ours, native = build_models(SIZES[args.size], workdir)
    return {"ours": ours, "native": native, "config": ours.config,
            "batches": make_batches(args.train_batch, args.train_length, 4)}


def inference_models(args, workdir: Path) -> dict:
    values = yaml.safe_load((CONFIGS / SIZES[args.size]).read_text())
    torch.manual_seed(0)
    config = NomicBertConfig(**{key: values[key] for key in ARCHITECTURE})
    ours = NomicBertModel(config)
    ours.save_pretrained(workdir / "encoder")
    native = transformers.NomicBertModel.from_pretrained(workdir / "encoder")
    return {"ours": ours, "native": native, "config": config}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--size", choices=sorted(SIZES), default="137m")
    parser.add_argument("--train_batch", "--train-batch", type=int, default=32, help="sequences per training step")
    parser.add_argument("--train_length", "--train-length", type=int, default=2048)
    parser.add_argument("--infer_batch", "--infer-batch", type=int, default=4)
    parser.add_argument("--infer_length", "--infer-length", type=int, default=8192)
    parser.add_argument("--varlen_texts", "--varlen-texts", type=int, default=32,
                        help="texts in the unequal-lengths batch")
    parser.add_argument("--varlen_length", "--varlen-length", type=int, default=2048,
                        help="longest text of the unequal-lengths batch")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--no_compile", "--no-compile", action="store_true", help="skip the torch.compile runs")
    parser.add_argument("--peak_tflops", "--peak-tflops", type=float,
                        help="the device's peak dense bf16 TFLOP/s (default: by name)")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "gpu.json")
    args = parser.parse_args()
    device = torch.device(args.device)
    peak = peak_flops(device, args.peak_tflops)
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    attentions = ["sdpa"] + (["flash_attention_2"] if device.type == "cuda" and is_flash_attn_2_available() else [])
    compiles = [False] if args.no_compile else [False, True]
    print(f"{card}; torch {torch.__version__}, transformers {transformers.__version__}; attention {attentions}; "
          f"peak {peak / 1e12 if peak else 'unknown'} TFLOP/s")

    rows = []
    print("\n| workload | implementation | attention | compile | tokens/s | model TFLOP/s | MFU | attention kernel | "
          "max abs diff vs CPU fp32 | min cosine vs CPU fp32 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for workload, build, run in (
        (f"MLM training {args.train_batch} x {args.train_length}", training_models, training_case),
        (f"inference {args.infer_batch} x {args.infer_length}", inference_models, inference_case),
        (f"inference {args.varlen_texts} texts <= {args.varlen_length}", varlen_models, varlen_case),
    ):
        for name in ("ours", "native"):
            for attention in attentions:
                for compile_model in compiles:
                    with tempfile.TemporaryDirectory() as workdir:  # fresh weights and optimizer for every case
                        result = run(build(args, Path(workdir)), name, attention, compile_model, args, device)
                    torch._dynamo.reset()
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
                    result.update(workload=workload, implementation=name, attention=attention,
                                  compile=compile_model, mfu=result["model_flops_per_s"] / peak if peak else None)
                    rows.append(result)
                    mfu = f"{result['mfu']:.1%}" if peak else "n/a"
                    checks = (f"{result['kernel']} | {result['max_abs_diff_vs_cpu_fp32']:.3f} | "
                              f"{result['min_cosine_vs_cpu_fp32']:.5f}" if "kernel" in result else "| |")
                    print(f"| {workload} | {name} | {attention} | {'on' if compile_model else 'off'} | "
                          f"{result['tokens_per_s']:,.0f} | {result['model_flops_per_s'] / 1e12:.1f} | {mfu} | "
                          f"{checks} |", flush=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"device": card, "torch": torch.__version__,
                                       "transformers": transformers.__version__, "peak_flops": peak,
                                       "settings": {k: str(v) for k, v in vars(args).items()}, "rows": rows},
                                      indent=2) + "\n")
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
