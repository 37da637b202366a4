"""What a benchmark ran on, recorded in every results file.

The CPU model matters as much as the core count: bf16 encoding runs on AMX tiles on recent Xeons
and on AVX512-BF16 on AMD EPYC, at different speeds, and these machines are handed out as either.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path


def _cpuinfo() -> tuple[str, set[str]]:
    model, flags = platform.processor() or "unknown", set()
    info = Path("/proc/cpuinfo")
    if info.exists():
        for line in info.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model in ("unknown", "", "x86_64"):
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    return model, flags


def describe() -> dict:
    """CPU model and the instruction sets that decide bf16 speed, cores, OS, Python, load."""
    model, flags = _cpuinfo()
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "amx_bf16": "amx_bf16" in flags,
        "avx512_bf16": "avx512_bf16" in flags,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def label(machine: dict | None) -> str:
    """Short text for tables, e.g. 'Intel(R) Xeon(R) Processor, 2 cores, AMX-BF16'."""
    if not machine:
        return "not recorded"
    cpu = machine.get("cpu") or "cpu not recorded"
    extras = [f"{machine.get('cpus') or machine.get('cpu_count') or '?'} cores"]
    if machine.get("onednn_max_cpu_isa"):
        extras.append(f"oneDNN capped at {machine['onednn_max_cpu_isa']}")
    elif machine.get("amx_bf16"):
        extras.append("AMX-BF16")
    elif machine.get("avx512_bf16") or machine.get("cpu_native_bf16"):
        extras.append("AVX512-BF16")
    return ", ".join([cpu, *extras])
