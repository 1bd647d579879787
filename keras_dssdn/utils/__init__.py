"""Helpers shared across the package's sub-packages, public inside the package (keras-hub's ``src/utils``).

==================  ==========================================================================================
``arrays``          :func:`~keras_dssdn.utils.arrays.evenly_spaced` (k of n indices, evenly spread),
                    :func:`~keras_dssdn.utils.arrays.example_batches` (numpy batches from a dataset, tuple or
                    array), :func:`~keras_dssdn.utils.arrays.check_examples` (examples against a model input)
``c_literals``      C literals for the generated sources (floats that round-trip, int arrays, strings)
``dataclass_dicts`` :func:`~keras_dssdn.utils.dataclass_dicts.dataclass_from_dict`: a frozen spec from a dict,
                    unknown keys refused by name (YAML / JSON configs, run folders, bundles)
==================  ==========================================================================================

Nothing here imports TensorFlow at module level.
"""
