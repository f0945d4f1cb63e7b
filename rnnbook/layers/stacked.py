r"""Stacked (deep) recurrent layers over any registered cell, with optional residual or dense connections.

Layer ``l`` reads the output sequence of layer ``l-1`` (layer 0 reads ``x``)::

    y^(-1) = x
    u^(l) = Cell_l(y^(l-1))                                    (T, B, H)
    y^(l) = u^(l) + y^(l-1)   if residual and l >= 1  (GNMT: from the second layer on)
            u^(l)             otherwise

With ``dense=True`` (Ding et al. 2018, *Densely Connected Bidirectional LSTM with
Applications to Sentence Classification*) layer ``l`` reads, instead, the input and
the outputs of *every* layer below it, concatenated on the feature axis::

    y^(l) = Cell_l([x | y^(0) | … | y^(l-1)])                  layer l reads D + l·H (D + l·2H bidirectional)

The output is ``y^(L-1)`` in every case (for ``dense``, too: the last layer's
output, ``(T, B, H)`` or ``2H``, not the concatenation).  Parameters are the cells'
parameters under the prefix ``"layer{l}."``; the state is the layers' states
concatenated in layer order (``(h0, c0, h1, c1)`` for a two-layer LSTM).  Each layer
may itself be bidirectional (``bidirectional=True``), in which case layers
``l >= 1`` read ``2H`` (or ``D + l·2H`` when dense).  ``residual`` and ``dense``
exclude each other.

Backward, layer by layer from the top::

    dy^(l-1) = dx of Cell_l (+ dy^(l) when residual: y^(l) = u^(l) + y^(l-1))

and when dense, the input gradient of layer ``l`` is split by columns like its
input, and each block is added to the gradient of the output it came from::

    [dx | dy^(0) | … | dy^(l-1)] += dx of Cell_l               (layers from the top down)

This module is written on top of ``rnnbook.dispatch`` and so runs on every backend
that has the cell.
"""
from .. import dispatch
from ..arrays import array_module
from ..checks import check_options

NAME = "stacked"


def _split(params, num_layers=None):
    """``{"layer0.W_ih": …}`` -> ``[{"W_ih": …}, …]`` (one dict per layer)."""
    if not isinstance(params, dict):
        raise TypeError(f"params for 'stacked' must be a dict of arrays, got {type(params).__name__}")
    layers: dict[int, dict] = {}
    for key, value in params.items():
        head, _, rest = key.partition(".")
        if not (head.startswith("layer") and head[5:].isdigit() and rest):
            raise ValueError(f"params for 'stacked' must be named 'layer<l>.<name>', got {key!r}")
        layers.setdefault(int(head[5:]), {})[rest] = value
    if sorted(layers) != list(range(len(layers))) or not layers:
        raise ValueError(f"params for 'stacked' must hold layers 0..L-1, got layers {sorted(layers)}")
    return [layers[l] for l in range(len(layers))]


def _inner(cell, bidirectional, cell_options):
    if not isinstance(cell, str):
        raise TypeError("'stacked' needs the option cell=<architecture name>, e.g. cell='lstm'")
    if bidirectional:
        return "bidirectional", {"cell": cell, **cell_options}
    return cell, dict(cell_options)


def _check(residual, bidirectional, dense):
    check_options(NAME, {"residual": residual, "bidirectional": bidirectional, "dense": dense},
                  {"residual": (False, True), "bidirectional": (False, True), "dense": (False, True)})
    if residual and dense:
        raise ValueError("'stacked' takes residual=True or dense=True, not both")


def init_params(input_size, hidden_size, seed=0, dtype=None, *, backend, cell=None, num_layers=2,
                residual=False, bidirectional=False, dense=False, **cell_options):
    """Parameters of ``num_layers`` layers of ``cell``; layer ``l`` is seeded with ``seed + l``."""
    _check(residual, bidirectional, dense)
    if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 1:
        raise ValueError(f"num_layers must be a positive integer, got {num_layers!r}")
    arch, opts = _inner(cell, bidirectional, cell_options)
    out_size = 2 * hidden_size if bidirectional else hidden_size
    params = {}
    for l in range(num_layers):
        layer_in = input_size + l * out_size if dense else (input_size if l == 0 else out_size)
        p = dispatch.init_params(arch, layer_in, hidden_size, seed=seed + l,
                                 dtype=dtype, backend=backend, **opts)
        params.update({f"layer{l}.{k}": v for k, v in p.items()})
    return params


def forward(params, x, state0=None, *, backend, cell=None, residual=False, bidirectional=False,
            dense=False, **cell_options):
    """``x (T, B, D)`` -> ``(y (T, B, H or 2H), state, cache)``."""
    _check(residual, bidirectional, dense)
    arch, opts = _inner(cell, bidirectional, cell_options)
    layers = _split(params)
    L = len(layers)
    if state0 is not None:
        if not isinstance(state0, (tuple, list)) or len(state0) % L:
            raise ValueError(f"state0 for a {L}-layer stack must be a tuple whose length is a "
                             f"multiple of {L} (the layers' states in order), got "
                             f"{len(state0) if isinstance(state0, (tuple, list)) else type(state0).__name__}")
    n = None if state0 is None else len(state0) // L
    inp, caches, states, outputs = x, [], [], [x]
    for l, p in enumerate(layers):
        s0 = None if state0 is None else tuple(state0[l * n:(l + 1) * n])
        u, s, c = dispatch.forward(arch, p, inp, s0, backend=backend, **opts)
        y = u + inp if (residual and l >= 1) else u
        caches.append(c)
        states.extend(s)
        outputs.append(y)
        inp = array_module(y).concatenate(outputs, axis=2) if dense else y     # [x | y^(0) | … | y^(l)]
    n_state = len(states) // L
    widths = [int(o.shape[2]) for o in outputs[:-1]]                          # D, then each layer's output
    cache = {"layers": caches, "arch": arch, "residual": residual, "dense": dense, "widths": widths,
             "n_state": n_state}
    return outputs[-1], tuple(states), cache


def backward(params, cache, dy, dstate=None, window=None, *, backend):
    """Gradients for every ``layer<l>.<name>``, ``"x"`` and ``"state0"`` (tuple, layer order)."""
    layers = _split(params)
    n = cache["n_state"]
    if dstate is not None and (not isinstance(dstate, (tuple, list)) or len(dstate) != n * len(layers)):
        raise ValueError(f"dstate must be a tuple of {n * len(layers)} arrays (the final states of all layers)")
    grads, dstate0 = {}, [None] * len(layers)
    d_outs = [None] * len(layers) + [dy]            # d_outs[l + 1] = dL/dy^(l); d_outs[0] = dL/dx
    for l in reversed(range(len(layers))):
        d_out = d_outs[l + 1]
        ds = None if dstate is None else tuple(dstate[l * n:(l + 1) * n])
        g = dispatch.backward(cache["arch"], layers[l], cache["layers"][l], d_out, ds, window=window)
        grads.update({f"layer{l}.{k}": v for k, v in g.items() if k not in ("x", "state0")})
        dstate0[l] = g["state0"]
        d_in = g["x"]
        if cache["dense"]:                          # layer l read [x | y^(0) | … | y^(l-1)]: split by columns
            start = 0
            for k, width in enumerate(cache["widths"][:l + 1]):
                block = array_module(d_in).ascontiguousarray(d_in[:, :, start:start + width])
                d_outs[k] = block if d_outs[k] is None else d_outs[k] + block
                start += width
        elif cache["residual"] and l >= 1:
            d_outs[l] = d_in + d_out                # y^(l) = u^(l) + y^(l-1)
        else:
            d_outs[l] = d_in
    grads = {k: grads[k] for k in params}           # keep the parameters' order
    grads["x"] = d_outs[0]
    grads["state0"] = tuple(s for layer in dstate0 for s in layer)
    return grads
