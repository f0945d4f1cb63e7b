"""Planted bugs for chapter 1: (chapter, exercise, old, new, strings the report must contain).

Each replaces ``old`` by ``new`` in the pasted-back solution of ``exercise``; the grader must
fail that exercise only and its report must contain every string."""
PLANTED = [
    (1, "1.1", '"W_hh": da.T @ h_prev', '"W_hh": h_prev.T @ da',
     ["Only dW_hh is wrong: check dW_hh = daᵀ h_prev", "dW_hh: is the transpose of the right value"]),
    (1, "1.1", "da = dh * dphi_a", "da = dh",
     ["check da = dh ⊙ φ'(a)", "dh_prev: equals the value with da = dh"]),
    (1, "1.2", "M[name] = D_b * (carried + immediate[name])", "M[name] = carried + D_b * immediate[name]",
     ["check the carried term D ⊙ (W_hh M_prev)", "M[W_hh] carried term: equals W_hh M_prev without the factor D"]),
    (1, "1.2", "* h_prev[:, None, None, :],", "* 2 * h_prev[:, None, None, :],",
     ["M[W_hh] immediate term (M_prev = 0)", "is 2 × the right value", "∂h_i/∂W_hh[k, j] = D_i δ_ik h_prev[j]"]),
    (1, "1.3", "min(1.0, max_norm / norm)", "max_norm / norm",
     ["clipped, when ‖g‖ < max_norm (must be unchanged): equals g scaled up to the threshold",
      "check the factor is min(1, max_norm / ‖g‖)"]),
]
