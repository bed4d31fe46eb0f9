"""Generated C++ built on first use: the compiler, the cache folder and the build.

The compiled spiking step (:mod:`bionn.spiking.compiled`) and the compiled
synaptic-diversity pass (:mod:`bionn.plasticity._fused`) generate plain C++ (no PyTorch
headers), build it with the system's C++ compiler (``-march=native``) into a shared
library named by a hash of its source, the compiler, its flags and the CPU's instruction
sets (a cache folder shared between machines never hands one a library built for
another), and load it with ``ctypes``. A later process with the same source loads the library without
compiling. The library is written atomically, so two processes building the same source
at once both end with a complete file.

Standard library and PyTorch only (it is imported by the lowest layers that use it).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

#: compiler flags: no floating-point contraction (the generated code keeps PyTorch's rounding)
FLAGS = ("-O3", "-march=native", "-ffp-contract=off", "-fno-math-errno", "-shared", "-fPIC",
         "-std=c++17")


def cache_dir() -> Path:
    """Where built libraries are kept: ``$BIONN_CACHE_DIR``, else ``~/.cache/bionn``."""
    root = os.environ.get("BIONN_CACHE_DIR")
    return Path(root) if root else Path.home() / ".cache" / "bionn"


def compiler() -> str | None:
    """The C++ compiler used (``$CXX``, else ``c++``/``g++``/``clang++``), or None."""
    for cand in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if cand and shutil.which(cand):
            return shutil.which(cand)
    return None


@functools.lru_cache(maxsize=1)
def cpu_signature() -> str:
    """The machine type and the CPU's feature flags (Linux: ``/proc/cpuinfo``)."""
    flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    flags = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{platform.machine()} {platform.processor()} {flags}"


@dataclass
class Built:
    """A built (or cached) library: ``lib`` (``ctypes.CDLL``), ``path``, ``compile_s``
    (0 when it came from the cache) and ``cached``."""

    lib: ctypes.CDLL
    path: Path
    compile_s: float
    cached: bool


def build(source: str, prefix: str, key: str = "") -> Built:
    """Compile ``source`` into ``cache_dir() / f"{prefix}_{hash}.so"`` unless it is there.

    ``key`` joins the hash (e.g. the PyTorch version the code relies on). Raises
    ``RuntimeError`` when no compiler is found or the compilation fails, ``OSError`` when
    the cache folder cannot be written.
    """
    cxx = compiler()
    if cxx is None:
        raise RuntimeError("no C++ compiler found (set CXX or install g++)")
    parts = [source, cxx, " ".join(FLAGS), key, cpu_signature()]
    digest = hashlib.sha256("\n".join(parts).encode()).hexdigest()
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{prefix}_{digest[:24]}.so"
    compile_s, cached = 0.0, path.exists()
    if not cached:
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(dir=folder) as tmp:
            src = Path(tmp) / "source.cpp"
            src.write_text(source)
            out = Path(tmp) / "library.so"
            proc = subprocess.run([cxx, *FLAGS, str(src), "-o", str(out)], capture_output=True,
                                  text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"compiling {prefix} failed ({cxx}):\n{proc.stderr[-2000:]}")
            os.replace(out, path)  # atomic: a concurrent build sees the old or the new file
        compile_s = time.perf_counter() - t0
    return Built(ctypes.CDLL(str(path)), path, compile_s, cached)


def declare(lib: ctypes.CDLL, argtypes: list, *names: str, restype=None) -> None:
    """Give the functions ``names`` of ``lib`` these ``argtypes`` and ``restype`` (default:
    no return value)."""
    for name in names:
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, argtypes


def plain_eager(*tensors: object) -> bool:
    """Whether these are plain tensors (or Parameters) in plain eager execution: no
    ``torch.func`` transform, dispatch mode, tracing or ``torch.compile``, none of which a
    compiled library called through raw pointers can take part in."""
    import torch
    from torch.utils._python_dispatch import _get_current_dispatch_mode

    return (all(type(t) in (torch.Tensor, torch.nn.Parameter) for t in tensors)
            and torch._C._functorch.peek_interpreter_stack() is None
            and _get_current_dispatch_mode() is None and not torch.compiler.is_compiling())


_HUGE_PAGE = 1 << 21
#: :func:`empty_mapped` maps buffers from this size up
MAPPED_MIN_BYTES = 4 << 20
_MADV_HUGEPAGE = 14  # Linux


@functools.lru_cache(maxsize=1)
def _madvise():
    if platform.system() != "Linux":
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    fn.argtypes, fn.restype = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int], ctypes.c_int
    return fn


def empty_mapped(numel: int, dtype):
    """A fresh 1-D CPU tensor of ``numel`` elements in its own anonymous memory mapping.

    For large buffers made at every training step (a gradient at connectome scale):

    * the memory goes back to the system when the tensor is freed, instead of staying in
      glibc's heap, where blocks of a few MB freed and requested every step fragment it and
      the heap grew by one block per step (a one-off trace at the fly optic-lobe size:
      5.8 MB per step for ten steps);
    * the mapping is 2 MB-aligned and, on Linux, asked for transparent huge pages, so the
      first write takes one page fault per 2 MB instead of per 4 kB (the resident size is
      rounded up to 2 MB).

    Below :data:`MAPPED_MIN_BYTES`, and on systems other than Linux (the heap behaviour and
    huge pages above are Linux's), it is ``torch.empty``: the heap serves small blocks well.

    Example:
        >>> import torch
        >>> empty_mapped(3, torch.float32).fill_(1.0).tolist()
        [1.0, 1.0, 1.0]
    """
    import mmap
    import warnings

    import torch

    nbytes = int(numel) * dtype.itemsize
    if nbytes < MAPPED_MIN_BYTES or platform.system() != "Linux":
        return torch.empty(int(numel), dtype=dtype)
    rounded = -(-max(nbytes, 1) // _HUGE_PAGE) * _HUGE_PAGE
    # private (a shared anonymous mapping is shmem, which gets no huge pages)
    buf = mmap.mmap(-1, rounded + _HUGE_PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    start = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    offset = (-start) % _HUGE_PAGE
    madvise = _madvise()
    if madvise is not None:
        madvise(start + offset, rounded, _MADV_HUGEPAGE)  # only a hint: failure is harmless
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # frombuffer: "the buffer is not writable" does not apply
        # the tensor keeps `buf` alive; the mapping is unmapped when the tensor is freed
        return torch.frombuffer(buf, dtype=dtype, count=int(numel), offset=offset)


def load(source: str, prefix: str, key: str = "") -> ctypes.CDLL | None:
    """:func:`build`'s library, or None where no compiler is found, the compilation fails
    or the cache folder cannot be written (for callers that fall back to PyTorch)."""
    if compiler() is None:
        return None
    try:
        return build(source, prefix, key).lib
    except (RuntimeError, OSError):
        return None
