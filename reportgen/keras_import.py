"""Keras, imported once without the C++ log lines TensorFlow writes to stderr on import.

Those lines (oneDNN notices, "could not find cuda drivers") come from native code
before TF_CPP_MIN_LOG_LEVEL is read, so they are silenced at the file-descriptor
level, during the import only. Python errors still surface as usual.

Keras imports two optional packages at import time that reportgen never uses through it:
scikit-learn (for its scikit-learn wrappers) and matplotlib.pyplot (for plot_image_gallery).
Both imports are guarded by ``except ImportError`` in Keras, so they are held back here while
Keras loads (their cost at a build's start: benchmarks/results.md, *Measured by hand*, from ``python
-X importtime``). reportgen imports scikit-learn itself later (t-SNE) and draws its curves
without pyplot; only Keras' own scikit-learn wrappers and image gallery, unused here, are off.

Python's cycle collector is off during the import, which makes millions of objects that live
as long as the process: its full collections, each rescanning every object seen so far, took
a good part of the import. Those objects are then frozen (``gc.freeze``), so later collections
leave them alone too.
"""

from __future__ import annotations

import gc
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

HELD_BACK = ("sklearn", "matplotlib.pyplot")  # modules Keras would import for nothing


def _import_quietly():
    sys.stderr.flush()
    saved_stderr = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    # None in sys.modules makes an import raise ImportError; modules already loaded stay.
    held = [name for name in HELD_BACK if name not in sys.modules]
    sys.modules.update(dict.fromkeys(held))
    collecting = gc.isenabled()
    gc.disable()
    try:
        os.dup2(devnull, 2)
        import keras
        import tensorflow  # noqa: F401  (the backend; imported here so its noise is silenced too)
        gc.freeze()
    finally:
        if collecting:
            gc.enable()
        for name in held:
            if sys.modules.get(name, False) is None:
                del sys.modules[name]
        os.dup2(saved_stderr, 2)
        os.close(saved_stderr)
        os.close(devnull)
    return keras


keras = _import_quietly()
