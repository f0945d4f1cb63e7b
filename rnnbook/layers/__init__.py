"""Building blocks written on top of the dispatch interface, so they run on any backend.

``stacked`` and ``bidirectional`` are registered as architectures (backend ``"*"``):
``rb.forward("stacked", params, x, cell="lstm", residual=True)``.  ``linear`` and
``embedding`` are plain layers used by ``rnnbook.model``.
"""
from .. import dispatch
from . import bidirectional, embedding, linear, stacked

for _module in (stacked, bidirectional):
    dispatch.register_module(_module.NAME, dispatch.ANY, _module, ("init_params", "forward", "backward"))
