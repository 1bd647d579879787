"""The front-end constants of a bundle: :mod:`keras_dssdn.frontend_constants` (moved to the package root so that
the inference side, which reads bundles and may not import ``deploy``, reads ``frontend.json`` through the same
owner). This import path is kept for the code of release 0.1."""

from keras_dssdn.frontend_constants import (FIXED, FrontEndConstants, Quantization, dense_filterbank,  # noqa: F401
                                            logmel_to_int8, sparse_filterbank)
