"""reportgen: a static HTML report of what a convolutional network does with your images.

The Python API (TensorFlow is imported only when a build starts)::

    import reportgen
    result = reportgen.build(model, test_ds, out="output/site", history=history)

``reportgen.keras.ReportCallback`` writes the report from ``model.fit``; errors in what
reportgen is given are ``reportgen.UserError``.
"""

__version__ = "0.1.0"

from reportgen.errors import UserError  # noqa: E402  (light: no TensorFlow)


def __getattr__(name: str):
    """``build`` and ``Result`` from ``reportgen.api``, imported when first used."""
    if name in ("build", "Result"):
        from reportgen import api

        return getattr(api, name)
    raise AttributeError(f"module 'reportgen' has no attribute {name!r}")


__all__ = ["Result", "UserError", "build"]
