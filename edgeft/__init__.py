"""edgeft: fine-tune an ImageNet CNN on a small dataset and ship it to edge hardware.

The pipeline's one artifact is the *bundle* (see :mod:`edgeft.bundle`). Importing this
package is cheap: torch, fastai, onnxruntime and TensorRT are imported only by the
modules that need them, and only when they are called.
"""

__version__ = "0.1.0"
