"""Suite-wide settings."""

import torch

# One intra-op thread: CI has 2 cores and pytest runs one test at a time;
# two threads on small tensors contend and can slow small simulations 10x.
torch.set_num_threads(1)

try:  # Importing brian2 replaces pytest's DoctestModule with one that fails on
    # package __init__ modules; import it now and put pytest's class back.
    from _pytest import doctest as _pytest_doctest

    _original = _pytest_doctest.DoctestModule
    import brian2  # noqa: F401

    _pytest_doctest.DoctestModule = _original
except ImportError:  # Brian2 is an optional test extra
    pass
