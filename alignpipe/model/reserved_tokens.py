"""The WordPiece vocabulary's reserved tokens and file name, in a module light enough for the filter.

`AlignTokenizer` (which imports TensorFlow) and the filter's vocabulary
(`alignpipe.filtering.wordpiece`) both read them from here.
"""

RESERVED_TOKENS = ("[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]")
VOCAB_FILE = "vocab.txt"  # one token a line, line number = token id (`AlignTokenizer.save`)
