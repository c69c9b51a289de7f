"""The dtype every path computes in, chosen from the hardware: bf16 where the chip multiplies bf16 matrices natively.

On CPU that is AMX (Intel Sapphire Rapids and later) or AVX-512 BF16 (Intel Cooper Lake, AMD Zen 4 and later), as
torch reports them; elsewhere bf16 runs through conversions and is slower than fp32, so `auto` keeps fp32. On CUDA,
`auto` is bf16 where the GPU supports it. Weights stay as they are on disk (fp32) unless a caller casts them.
"""

import logging
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
DTYPE_CHOICES = ("auto", *DTYPES)


def default_device() -> str:
    """The device the scripts run on when none is given (as sentence-transformers picks it: CUDA, else CPU)."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def bf16_matrix_units() -> str | None:
    """This CPU's bf16 matrix instructions ("AMX" or "AVX-512 BF16"), or None."""
    capabilities = torch.cpu.get_capabilities()
    if capabilities.get("amx_bf16"):
        return "AMX"
    if capabilities.get("avx512_bf16"):
        return "AVX-512 BF16"
    return None


def bf16_is_fast(device: str | torch.device = "cpu") -> bool:
    """Whether bf16 matrix multiplication runs natively on `device`."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    return device.type == "cpu" and bf16_matrix_units() is not None


def choose_dtype(requested: str = "auto", device: str | torch.device | None = None) -> torch.dtype:
    """The dtype for `requested` ("auto", "float32" or "bfloat16") on `device` (default: `default_device()`).

    `auto` is bf16 where `bf16_is_fast`, else fp32, with the reason logged; bf16 asked for where it is not fast runs,
    with a warning."""
    if requested not in DTYPE_CHOICES:
        raise ValueError(f"dtype {requested!r}: choose one of {', '.join(DTYPE_CHOICES)}")
    device = torch.device(device or default_device())
    fast = bf16_is_fast(device)
    hardware = describe(device)
    if requested == "auto":
        dtype = torch.bfloat16 if fast else torch.float32
        reason = "multiplies bf16 matrices natively" if fast else "has no bf16 matrix instructions"
        logger.info(f"dtype auto: {dtype_name(dtype)}, since {hardware} {reason}")
        return dtype
    if requested == "bfloat16" and not fast:
        logger.warning(f"dtype bfloat16 on {hardware}, which has no bf16 matrix instructions: slower than float32")
    return DTYPES[requested]


def use_bf16(requested: str | bool, device: str | torch.device | None = None) -> bool:
    """A training config's `bf16` (true, false or "auto") as the Trainer's flag: `auto` is `choose_dtype("auto")`."""
    if isinstance(requested, bool):
        return requested
    value = str(requested).strip().lower()
    if value == "auto":
        return choose_dtype("auto", device) == torch.bfloat16
    if value in ("true", "yes", "1"):
        return True
    if value in ("false", "no", "0", ""):
        return False
    raise ValueError(f"bf16 {requested!r}: choose true, false or auto")


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def cpu_name() -> str:
    """The CPU's model name as the kernel reports it (`torch.cpu.get_capabilities()` has only the vendor line)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return str(torch.cpu.get_capabilities().get("cpu_name", "unknown CPU"))


def describe(device: str | torch.device = "cpu") -> str:
    """The hardware in a few words, for logs and tables: the GPU's name, or the CPU with its vector and bf16 units."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    units = bf16_matrix_units()
    return (f"{cpu_name()} ({torch.backends.cpu.get_cpu_capability()}, "
            f"{'bf16 via ' + units if units else 'no bf16 matrix units'}, {torch.get_num_threads()} threads)")


def compute_record(dtype: torch.dtype, device: str | torch.device | None = None) -> dict:
    """What a result was computed with, for `provenance.json` and `results.json`."""
    device = torch.device(device or default_device())
    record = {"dtype": dtype_name(dtype), "device": device.type, "torch_threads": torch.get_num_threads()}
    if device.type == "cuda":
        return {**record, "gpu": torch.cuda.get_device_name(device)}
    return {**record, "cpu": cpu_name(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "bf16_matrix_units": bf16_matrix_units()}
