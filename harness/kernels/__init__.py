"""The fixed-order fp32 kernels of the acting forward: C sources by operation (``fx.h``,
``products.c``, ``norms.c``, ``attention.c``, ``activations.c``, ``dispatch.c``), their build
(:mod:`~harness.kernels.build`), their binding by name (:mod:`~harness.kernels.binding`) and the
torch-facing operations (:mod:`~harness.kernels.fixedgemm`)."""
