"""The test suite. A regular package, so that `tests` is this folder even where an installed
distribution ships its own top-level `tests` package (tf2onnx does): a namespace package loses to it."""
