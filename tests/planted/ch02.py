"""Planted bugs for chapter 2: (chapter, exercise, old, new, strings the report must contain).

Each replaces ``old`` by ``new`` in the pasted-back solution of ``exercise``; the grader must
fail that exercise only and its report must contain every string."""
PLANTED = [
    # 2.1 SCRN: the context's error misses the path from the hidden layer through P
    (2, "2.1", 'ds = ds_next + da @ params["P"]', "ds = ds_next",
     ["check the context's error from the hidden layer: ds = ds_next + da P",
      "dB: equals the value without the path through P",
      "dB with ds_next = 0: is zero everywhere"]),
    # 2.1 SCRN: α and 1 − α swapped in the context's carried error
    (2, "2.1", "ds_prev = alpha * ds", "ds_prev = (1 - alpha) * ds",
     ["Only ds_prev, ds_prev with dh = 0, ds_prev with ds_next = 0 are wrong: check ds_prev = α ds",
      "ds_prev: equals the value with α and 1 − α swapped"]),
    # 2.1 SCRN: dP transposed
    (2, "2.1", '"P": da.T @ s,', '"P": s.T @ da,',
     ["Only dP is wrong: check dP = daᵀ s_t", "dP: is the transpose of the right value"]),
    # 2.2 leaky: the softplus chain factor dτ/dρ forgotten
    (2, "2.2", 'dparams["rho"] = dtau * dtau_dparam', 'dparams["rho"] = dtau',
     ["Only dρ is wrong: check dρ = dτ ⊙ dτ/dρ, with dτ/dρ = sigmoid(ρ)",
      "dρ: equals dτ: the softplus chain factor dτ/dρ = sigmoid(ρ) is missing"]),
    # 2.2 leaky: the leak term of dh_prev forgotten
    (2, "2.2", 'dh_prev = dh * (1 - 1 / tau) + da @ params["W_hh"]', 'dh_prev = da @ params["W_hh"]',
     ["check the leak term of dh_prev: dh ⊙ (1 − 1/τ)",
      "dh_prev with W_hh = 0 (the leak term): is zero everywhere: this term is missing"]),
    # 2.2 leaky: φ'(a) forgotten in da
    (2, "2.2", "da = dh / tau * dphi_a", "da = dh / tau",
     ["check da = dh ⊙ φ'(a) / τ", "dW_ih: equals the value with da = dh / τ: the factor φ'(a)"]),
    # 2.2 leaky: dτ without the leak's own dependence on τ
    (2, "2.2", "(dh * (f - h_prev))", "(dh * f)",
     ["check dτ = −Σ over the batch of dh ⊙ (φ(a) − h_prev) / τ²", "the leak's own dependence on τ is missing"]),
    # 2.3 leaky RTRL: the leak diagonal of J forgotten (identity instead of 1 − 1/τ)
    (2, "2.3", "J = (1 - 1 / tau)[None, :, None] * eye +", "J = eye +",
     ["check the leak diagonal of J: diag(1 − 1/τ)",
      "M[rho] carried term with W_hh = 0: equals M_prev itself: the factor (1 − 1/τ) is missing"]),
    # 2.3 leaky RTRL: the immediate ρ term without the softplus chain factor
    (2, "2.3", "* dtau_drho)[:, :, None] * eye", ")[:, :, None] * eye",
     ["Only M[rho] immediate term (M_prev = 0) is wrong",
      "equals the value without the chain factor sigmoid(ρ) (that is ∂h/∂τ)"]),
    # 2.3 leaky RTRL: 1/τ forgotten in ∂h/∂a
    (2, "2.3", "g = dphi / tau", "g = dphi",
     ["check g = φ'(a)/τ", "M[W_ih] immediate term (M_prev = 0): equals φ'(a) ∂a/∂θ: the factor 1/τ is missing"]),
]
