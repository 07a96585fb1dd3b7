"""Compiled kernels XLA is handed through its FFI, each with the plain XLA form as fallback.

`blas`: attention's float32 batched block matmuls on CPU through numpy's OpenBLAS.
"""
