"""The outside peer: PyTorch's nn.RNN / nn.LSTM / nn.GRU in float64.

Weight layout (documented in the cells' docstrings): ours ``W_ih, W_hh`` are PyTorch's
``weight_ih_l0, weight_hh_l0``; RNN/LSTM fold the two biases into ``b``
(``b = bias_ih + bias_hh``, and dL/db equals both PyTorch bias gradients); GRU keeps
``b_ih, b_hh``.  The original-form GRU (reset before the product) has no PyTorch
counterpart and is checked by the other oracles.
"""
import numpy as np
import pytest

import rnnbook as rb

from conftest import N_STATE, random_problem, rel_err

torch = pytest.importorskip("torch")

TOL = 1e-10


def _torch_module(arch, D, H, options, num_layers=1, bidirectional=False):
    kw = dict(num_layers=num_layers, bidirectional=bidirectional, dtype=torch.float64)
    if arch == "rnn":
        return torch.nn.RNN(D, H, nonlinearity=options.get("nonlinearity", "tanh"), **kw)
    return {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[arch](D, H, **kw)


def _load(module, arch, p, suffix, rng):
    """Copy our parameters into ``module``'s ``*_l{layer}{_reverse}`` tensors."""
    with torch.no_grad():
        getattr(module, f"weight_ih_{suffix}").copy_(torch.from_numpy(p["W_ih"]))
        getattr(module, f"weight_hh_{suffix}").copy_(torch.from_numpy(p["W_hh"]))
        if arch == "gru":
            getattr(module, f"bias_ih_{suffix}").copy_(torch.from_numpy(p["b_ih"]))
            getattr(module, f"bias_hh_{suffix}").copy_(torch.from_numpy(p["b_hh"]))
        else:                                  # split b at random: only the sum matters
            part = rng.standard_normal(p["b"].shape)
            getattr(module, f"bias_ih_{suffix}").copy_(torch.from_numpy(p["b"] - part))
            getattr(module, f"bias_hh_{suffix}").copy_(torch.from_numpy(part))


def _grads(module, arch, suffix):
    g = {"W_ih": getattr(module, f"weight_ih_{suffix}").grad.numpy(),
         "W_hh": getattr(module, f"weight_hh_{suffix}").grad.numpy()}
    bi = getattr(module, f"bias_ih_{suffix}").grad.numpy()
    bh = getattr(module, f"bias_hh_{suffix}").grad.numpy()
    if arch == "gru":
        g["b_ih"], g["b_hh"] = bi, bh
    else:
        np.testing.assert_allclose(bi, bh, rtol=1e-12, atol=1e-14)
        g["b"] = bi
    return g


def _run_torch(module, arch, x, s0, dy, ds):
    xt = torch.from_numpy(x).requires_grad_(True)
    st = [torch.from_numpy(np.stack(a)).requires_grad_(True) for a in s0]   # (layers*dirs, B, H)
    y, sT = module(xt, tuple(st) if arch == "lstm" else st[0])
    sT = sT if arch == "lstm" else (sT,)
    loss = (y * torch.from_numpy(dy)).sum() + sum((a * torch.from_numpy(np.stack(d))).sum()
                                                  for a, d in zip(sT, ds))
    loss.backward()
    return y.detach().numpy(), [a.detach().numpy() for a in sT], xt.grad.numpy(), [a.grad.numpy() for a in st]


@pytest.mark.parametrize("arch,options", [("rnn", {"nonlinearity": "tanh"}), ("rnn", {"nonlinearity": "relu"}),
                                          ("lstm", {}), ("gru", {})],
                         ids=["rnn-tanh", "rnn-relu", "lstm", "gru"])
@pytest.mark.parametrize("shape", [(7, 3, 4, 5), (1, 1, 1, 1), (12, 2, 6, 3)])
def test_matches_torch(arch, options, shape, rng):
    T, B, D, H = shape
    p, x, s0 = random_problem(arch, T, B, D, H, rng, **options)
    y, s, cache = rb.forward(arch, p, x, s0, **options)
    dy = rng.standard_normal(y.shape)
    ds = tuple(rng.standard_normal(a.shape) for a in s)
    g = rb.backward(arch, p, cache, dy, ds)

    module = _torch_module(arch, D, H, options)
    _load(module, arch, p, "l0", rng)
    # torch states are (h,) / (h, c), each (1, B, H): per state array, one layer
    ty, ts, tdx, tds0 = _run_torch(module, arch, x, [[a] for a in s0], dy, [[a] for a in ds])
    assert rel_err(y, ty) <= TOL
    for a, b in zip(s, ts):
        assert rel_err(a, b[0]) <= TOL
    tg = _grads(module, arch, "l0")
    for k in p:
        assert rel_err(g[k], tg[k]) <= TOL, k
    assert rel_err(g["x"], tdx) <= TOL
    for a, b in zip(g["state0"], tds0):
        assert rel_err(a, b[0]) <= TOL


@pytest.mark.parametrize("arch", ["lstm", "gru", "rnn"])
def test_stacked_bidirectional_matches_torch(arch, rng):
    """Our stacked(bidirectional) composite == nn.<Cell>(num_layers=2, bidirectional=True)."""
    T, B, D, H = 5, 2, 3, 4
    params = rb.init_params("stacked", D, H, cell=arch, num_layers=2, bidirectional=True)
    params = {k: 0.6 * rng.standard_normal(v.shape) for k, v in params.items()}
    n = N_STATE[arch]
    x = rng.standard_normal((T, B, D))
    # our state order: layer0 fwd (n arrays), layer0 bwd, layer1 fwd, layer1 bwd
    s0 = tuple(0.5 * rng.standard_normal((B, H)) for _ in range(4 * n))
    y, s, cache = rb.forward("stacked", params, x, s0, cell=arch, bidirectional=True)
    dy = rng.standard_normal(y.shape)
    ds = tuple(rng.standard_normal((B, H)) for _ in range(4 * n))
    g = rb.backward("stacked", params, cache, dy, ds)

    module = _torch_module(arch, D, H, {}, num_layers=2, bidirectional=True)
    blocks = [(l, d) for l in range(2) for d in ("fwd", "bwd")]          # torch's order too
    for l, d in blocks:
        sub = {k.split(".", 2)[2]: v for k, v in params.items() if k.startswith(f"layer{l}.{d}.")}
        _load(module, arch, sub, f"l{l}" + ("_reverse" if d == "bwd" else ""), rng)
    # torch wants per state kind a (4, B, H) stack in the same block order
    per_kind = lambda st: [[st[j * n + i] for j in range(4)] for i in range(n)]   # noqa: E731
    ty, ts, tdx, tds0 = _run_torch(module, arch, x, per_kind(s0), dy, per_kind(ds))
    assert rel_err(y, ty) <= TOL
    for j in range(4):
        for i in range(n):
            assert rel_err(s[j * n + i], ts[i][j]) <= TOL
            assert rel_err(g["state0"][j * n + i], tds0[i][j]) <= TOL
    for l, d in blocks:
        tg = _grads(module, arch, f"l{l}" + ("_reverse" if d == "bwd" else ""))
        for k, v in tg.items():
            assert rel_err(g[f"layer{l}.{d}.{k}"], v) <= TOL, (l, d, k)
    assert rel_err(g["x"], tdx) <= TOL
