"""An outside peer: the Numba backend in float64 against PyTorch's nn.RNN / nn.LSTM / nn.GRU."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("rnnbook.numba_cpu")
import rnnbook as rb  # noqa: E402


def torch_module(arch, D, H, params, opts):
    if arch == "rnn":
        m = torch.nn.RNN(D, H, nonlinearity=opts["nonlinearity"])
    else:
        m = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[arch](D, H)
    m = m.double()
    with torch.no_grad():
        m.weight_ih_l0.copy_(torch.from_numpy(params["W_ih"]))
        m.weight_hh_l0.copy_(torch.from_numpy(params["W_hh"]))
        if arch == "gru":
            m.bias_ih_l0.copy_(torch.from_numpy(params["b_ih"]))
            m.bias_hh_l0.copy_(torch.from_numpy(params["b_hh"]))
        else:                                   # one folded bias: put it all in b_ih
            m.bias_ih_l0.copy_(torch.from_numpy(params["b"]))
            m.bias_hh_l0.zero_()
    return m


@pytest.mark.parametrize("arch,opts", [("rnn", {"nonlinearity": "tanh"}), ("rnn", {"nonlinearity": "relu"}),
                                       ("lstm", {}), ("gru", {"reset_after": True})])
def test_matches_pytorch_float64(arch, opts):
    rng = np.random.default_rng(11)
    T, B, D, H = 6, 3, 4, 5
    params = rb.init_params(arch, D, H, seed=2, **opts)
    params = {k: v + 0.2 * rng.standard_normal(v.shape) for k, v in params.items()}
    x = rng.standard_normal((T, B, D))
    dy = rng.standard_normal((T, B, H))
    y, state, cache = rb.forward(arch, params, x, backend="numba", **opts)
    grads = rb.backward(arch, params, cache, dy)

    m = torch_module(arch, D, H, params, opts)
    xt = torch.from_numpy(x).requires_grad_(True)
    out, _ = m(xt)
    out.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(y, out.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(grads["x"], xt.grad.numpy(), rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(grads["W_hh"], m.weight_hh_l0.grad.numpy(), rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(grads["W_ih"], m.weight_ih_l0.grad.numpy(), rtol=1e-9, atol=1e-11)
    b_name = "b_ih" if arch == "gru" else "b"
    np.testing.assert_allclose(grads[b_name], m.bias_ih_l0.grad.numpy(), rtol=1e-9, atol=1e-11)
