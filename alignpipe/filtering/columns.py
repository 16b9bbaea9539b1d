"""Column helpers on Arrow arrays: the filter's batches keep their strings in Arrow.

A batch of pairs crosses shuffles, and Beam's Python SDK encodes an element it hands on (and
samples the size of the first elements of every step by encoding them): a column of Python
strings encodes one object at a time, an Arrow string array as a copy of two buffers. So the
filter's text columns are Arrow strings, and the steps that count over them (distinct keys,
words of alt-texts) work on the arrays with Arrow's kernels and numpy, never string by string.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def arrow_array(values) -> pa.Array:
    """`values` (an Arrow array, a pandas Series or array, a numpy array) as an Arrow array;
    strings as `large_string`, the type of pandas' Arrow-backed strings."""
    array = values if isinstance(values, pa.Array) else pa.array(values)
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    return array.cast(pa.large_string()) if array.type == pa.string() else array


def concatenated(arrays: list[pa.Array]) -> pa.Array:
    """One array of `arrays`; an all-null piece (type null) takes the others' type."""
    typed = [array.type for array in arrays if array.type != pa.null()]
    kind = typed[0] if typed else pa.null()
    return pa.concat_arrays([array if array.type == kind else array.cast(kind) for array in arrays])


def factorized(array: pa.Array) -> tuple[np.ndarray, pa.Array]:
    """(per value, the index of its distinct value, int64 array; the distinct values in
    first-seen order), a null being a value like any other."""
    encoded = pc.dictionary_encode(array, null_encoding="encode")
    return encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64), encoded.dictionary


def alt_words(alts: pa.Array) -> tuple[np.ndarray, pa.Array]:
    """The words of normalised alt-texts (`rules.normalise_alt_text`: unigrams joined by single
    spaces, so splitting on spaces gives them back): per text, its number of words (int64
    array of shape [texts]), and all words, text after text (string array of their sum).
    An empty text has none (a plain split would give it one empty word)."""
    alts = arrow_array(alts)
    if alts.type == pa.null():
        alts = alts.cast(pa.large_string())
    some = pc.greater(pc.binary_length(alts), 0).fill_null(False).to_numpy(zero_copy_only=False)
    split = pc.split_pattern(alts.filter(some), " ")
    lengths = np.zeros(len(alts), dtype=np.int64)
    lengths[some] = pc.list_value_length(split).to_numpy(zero_copy_only=False)
    return lengths, pc.list_flatten(split)
