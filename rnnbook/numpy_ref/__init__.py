"""The NumPy reference backend: readable cells with hand-derived BPTT and RTRL.

Importing this package registers every cell with ``rnnbook.dispatch`` under the
backend name ``"numpy"``.
"""
from .. import dispatch
from . import gru, leaky, lstm, rnn, scrn

CELLS = {m.NAME: m for m in (rnn, lstm, gru, scrn, leaky)}

for _name, _module in CELLS.items():
    dispatch.register_module(_name, "numpy", _module)
