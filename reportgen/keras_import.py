"""Keras, imported once without the C++ log lines TensorFlow writes to stderr on import.

Those lines (oneDNN notices, "could not find cuda drivers") come from native code
before TF_CPP_MIN_LOG_LEVEL is read, so they are silenced at the file-descriptor
level, during the import only. Python errors still surface as usual.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _import_quietly():
    sys.stderr.flush()
    saved_stderr = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import keras
        import tensorflow  # noqa: F401  (the backend; imported here so its noise is silenced too)
    finally:
        os.dup2(saved_stderr, 2)
        os.close(saved_stderr)
        os.close(devnull)
    return keras


keras = _import_quietly()
