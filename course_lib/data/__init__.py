"""The course's data: small, generated or shipped, never downloaded at run time.

- :mod:`.toy`: the running example's vocabulary and hand-made interpretable vectors
  ("The cat sat on the mat because it was tired.", chapters 01-05).
- :mod:`.tasks`: synthetic tasks with a known answer (dates, copying, coreference; chapter 08).
- :mod:`.translation`: the toy English -> French pair with a known word alignment, and the
  smallest cross-attention translator (chapters 06 and 08).
- :mod:`.corpus`: Shakespeare's plays (Project Gutenberg, public domain), shipped as
  ``shakespeare.txt``, with a character tokenizer, the train/validation split and the unigram and
  bigram baselines (chapter 11).
"""
