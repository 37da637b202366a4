"""Device and dtype resolution for the text encoders.

An explicit request is honoured or refused with a clear error: asking for "cuda" on a machine
without CUDA never falls back to the CPU silently, because a run that was sized for a GPU would
then take hours without anyone noticing.

dtype names: "fp32", "bf16", "fp16" and "auto".
- "auto" picks fp16 on CUDA and MPS, bf16 on a CPU with native bf16 support (AVX512-BF16 / AMX,
  as oneDNN reports it) and fp32 on other CPUs. On this project's CPUs bf16 encodes MiniLM
  about 1.8x faster than fp32 (2.3x sentence-transformers' fp32 speed) with mean cosine
  0.99995 to the fp32 vectors (benchmarks/encoder_throughput.py).
- "fp16" on the CPU is rejected: PyTorch's CPU fp16 kernels are emulated (slow) and fp16's
  range overflows in some models; ask for "bf16" instead.
- "bf16" on a CPU without native bf16 is allowed (it is correct, only slow).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("auto", "fp32", "bf16", "fp16")


def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def _mps_available() -> bool:
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def cpu_has_native_bf16() -> bool:
    """Whether this CPU runs bf16 matrix products natively (oneDNN's own check)."""
    import torch

    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def resolve_device(requested: str = "auto", require: bool = False) -> str:
    """Turn a requested device into the one to use.

    "auto" picks cuda > mps > cpu. An explicit "cuda" (or "cuda:N") or "mps" that is not present
    raises RuntimeError. With `require=True`, "auto" must find an accelerator (cuda or mps) and
    raises RuntimeError when only the CPU is there: for environments sized for a GPU.
    """
    req = (requested or "").strip().lower()
    base = req.split(":", 1)[0]
    if base not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES} (or 'cuda:N'), got {requested!r}")
    if base == "auto":
        if _cuda_available():
            return "cuda"
        if _mps_available():
            return "mps"
        if require:
            raise RuntimeError(
                "device 'auto' with require=True found no accelerator (no CUDA, no MPS) on "
                "this machine; use device='cpu' to run on the CPU deliberately"
            )
        return "cpu"
    if base == "cuda":
        if not _cuda_available():
            raise RuntimeError(
                f"device {requested!r} was requested but CUDA is not available on this machine "
                "(torch.cuda.is_available() is False); use device='cpu' or 'auto'"
            )
        if ":" in req:
            import torch

            index = int(req.split(":", 1)[1])
            if index >= torch.cuda.device_count():
                raise RuntimeError(
                    f"device {requested!r} was requested but only "
                    f"{torch.cuda.device_count()} CUDA device(s) exist"
                )
        return req
    if base == "mps":
        if ":" in req:
            raise ValueError(f"device 'mps' takes no index, got {requested!r}")
        if not _mps_available():
            raise RuntimeError(
                f"device {requested!r} was requested but MPS is not available on this machine; "
                "use device='cpu' or 'auto'"
            )
        return "mps"
    if ":" in req:
        raise ValueError(f"device 'cpu' takes no index, got {requested!r}")
    return "cpu"


def resolve_dtype_name(requested: str, device: str) -> str:
    """Turn a requested dtype name into the one to use on `device` ("fp32", "bf16" or "fp16")."""
    req = (requested or "").strip().lower()
    if req not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {requested!r}")
    on_cpu = device.split(":", 1)[0] == "cpu"
    if req == "auto":
        if not on_cpu:
            return "fp16"
        return "bf16" if cpu_has_native_bf16() else "fp32"
    if req == "fp16" and on_cpu:
        raise ValueError(
            "dtype 'fp16' is not supported on the CPU (emulated, slow, overflow-prone); "
            "use 'bf16' (native on AVX512-BF16/AMX CPUs) or 'fp32'"
        )
    return req


def torch_dtype(name: str) -> Any:
    """The torch dtype for a resolved dtype name ("fp32", "bf16", "fp16")."""
    import torch

    mapping = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    if name not in mapping:
        raise ValueError(f"dtype name must be one of {tuple(mapping)}, got {name!r}")
    return mapping[name]


@contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run the block with `count` intra-op threads (None: leave torch's setting), then restore."""
    import torch

    if count is None:
        yield
        return
    if count < 1:
        raise ValueError(f"num_threads must be >= 1 or None, got {count}")
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
