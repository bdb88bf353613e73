"""reportgen: a static HTML report of what a convolutional network does with your images."""

__version__ = "0.1.0"
