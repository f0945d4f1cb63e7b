"""Regularisation and optimisation of recurrent networks (Part I, chapter 6).

- ``dropout``: inverted dropout on the non-recurrent connections -- fresh mask per
  step (Zaremba et al. 2014), tied across time (variational / locked), and on
  embedding rows.
- ``dropconnect``: DropConnect on ``W_hh`` (AWD-LSTM's weight-dropped RNN), for any
  cell on any backend, through ``rnnbook.dispatch``.
- ``ntasgd``: non-monotonically triggered averaged SGD (AWD-LSTM).
- ``l2``: an explicit L2 penalty with its gradient.
- ``pruning``: gradual magnitude pruning with the cubic schedule (Zhu & Gupta
  2017) and the equal-memory small-dense size.
- ``lm``: a token language model with all of the above in place, and
  ``train_char_lm`` to switch each on and off on the bundled text.
"""
from . import dropconnect, dropout, l2, lm, ntasgd, pruning
from .dropconnect import DropConnect
from .dropout import Dropout
from .l2 import l2_penalty
from .lm import RegularizedLM, evaluate_lm, train_char_lm
from .ntasgd import NTASGD, nonmonotone_trigger
from .pruning import (GradualPruner, PrunedOptimizer, cubic_sparsity, equal_memory_hidden_size,
                      sequence_model_param_count, small_dense_hidden_size)

__all__ = ["DropConnect", "Dropout", "GradualPruner", "NTASGD", "PrunedOptimizer", "RegularizedLM",
           "cubic_sparsity", "dropconnect", "dropout", "equal_memory_hidden_size", "evaluate_lm", "l2",
           "l2_penalty", "lm", "nonmonotone_trigger", "ntasgd", "pruning", "sequence_model_param_count",
           "small_dense_hidden_size", "train_char_lm"]
