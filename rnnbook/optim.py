r"""Optimisers that update a parameter dict in place from a gradient dict.

SGD with (heavy-ball) momentum ``μ``::

    v <- μ v + g          θ <- θ - η v

Adam (Kingma & Ba 2015), step ``t = 1, 2, …``::

    m <- β1 m + (1-β1) g          v <- β2 v + (1-β2) g²
    m̂ = m / (1-β1^t)              v̂ = v / (1-β2^t)
    θ <- θ - η m̂ / (sqrt(v̂) + ε)

Both accept an optional decoupled weight decay (``θ <- θ - η λ θ``).
"""
from .arrays import array_module


class _Optimizer:
    def __init__(self, lr, weight_decay=0.0):
        if not lr > 0:
            raise ValueError(f"lr must be positive, got {lr!r}")
        self.lr = lr
        self.weight_decay = weight_decay
        self.state: dict = {}

    def _grad_for(self, params, grads, name):
        if name not in grads:
            raise KeyError(f"no gradient for parameter {name!r}")
        g = grads[name]
        if tuple(g.shape) != tuple(params[name].shape):
            raise ValueError(f"gradient for {name!r} has shape {tuple(g.shape)}, "
                             f"parameter has {tuple(params[name].shape)}")
        return g

    def step(self, params: dict, grads: dict) -> None:
        for name in params:
            g = self._grad_for(params, grads, name)
            if self.weight_decay:
                params[name] -= self.lr * self.weight_decay * params[name]
            self._update(name, params[name], g)


class SGD(_Optimizer):
    """Stochastic gradient descent with momentum ``momentum`` (0 = plain SGD)."""

    def __init__(self, lr=0.1, momentum=0.0, weight_decay=0.0):
        super().__init__(lr, weight_decay)
        self.momentum = momentum

    def _update(self, name, p, g):
        if self.momentum:
            v = self.state.get(name)
            v = g.copy() if v is None else self.momentum * v + g      # v <- μ v + g
            self.state[name] = v
            g = v
        p -= self.lr * g                                             # θ <- θ - η v


class Adam(_Optimizer):
    """Adam with bias correction."""

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(lr, weight_decay)
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.t = 0

    def step(self, params, grads):
        self.t += 1
        super().step(params, grads)

    def _update(self, name, p, g):
        xp = array_module(p)
        m, v = self.state.get(name, (xp.zeros_like(p), xp.zeros_like(p)))
        m = self.beta1 * m + (1 - self.beta1) * g
        v = self.beta2 * v + (1 - self.beta2) * g * g
        self.state[name] = (m, v)
        m_hat = m / (1 - self.beta1 ** self.t)
        v_hat = v / (1 - self.beta2 ** self.t)
        p -= self.lr * m_hat / (xp.sqrt(v_hat) + self.eps)
