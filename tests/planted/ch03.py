"""Planted bugs for chapter 3: (chapter, exercise, old, new, strings the report must contain).

Each replaces ``old`` by ``new`` in the pasted-back solution of ``exercise``; the grader must
fail that exercise only and its report must contain every string."""
PLANTED = [
    (3, "3.1", "df * f * (1 - f)", "df * f",
     ["check the forget gate's local gradient: df = dc ⊙ c_prev and dz_f = df ⊙ f ⊙ (1 − f)",
      "forget gate f", "dW_ih rows 5..9", "dW_hh rows 5..9", "db[5:10]"]),
    (3, "3.1", "do = dh * tanh_c", "do = dh * c",
     ["check the output gate's local gradient", "output gate o",
      "dW_hh rows 15..19: equals the value with do = dh ⊙ c_t (the tanh of h = o ⊙ tanh(c_t) is missing)"]),
    (3, "3.1", "dc = dc_next + dh * o", "dc = dh * o",
     ["check the error carried along the cell from step t+1: dc = dc_next + …",
      "dc_prev with dh = 0 (the carried error alone): is zero everywhere: this term is missing"]),
    (3, "3.1", "dg * (1 - g ** 2)", "dg * g * (1 - g)",
     ["check the candidate's local gradient", "candidate g",
      "dW_ih rows 10..14: equals the value with σ' = g ⊙ (1 − g) instead of tanh' = 1 − g² for the candidate"]),
    (3, "3.2", 'dc = dc + dz_o * params["p_o"]', "dc = dc + 0 * dz_o",
     ["check the output peephole's term in dc: dc = … + dz_o ⊙ p_o", "output peephole p_o",
      "dc_prev with only p_o ≠ 0"]),
    (3, "3.2", ' + dz_f * params["p_f"]', "",
     ["check the forget peephole's term in dc_prev: dc_prev = dc ⊙ f + … + dz_f ⊙ p_f", "forget peephole p_f",
      "dc_prev with only p_f ≠ 0"]),
    (3, "3.2", '"p_o": (dz_o * c).sum', '"p_o": (dz_o * c_prev).sum',
     ["check dp_o = Σ over the batch of dz_o ⊙ c_t", "output peephole p_o",
      "dp_o: equals Σ dz_o ⊙ c_prev (the old cell; z_o = … + p_o ⊙ c_t uses the new one)"]),
    (3, "3.3", "di = dc * g - df", "di = dc * g",
     ["check the coupling term: f = 1 − i", "input gate i",
      "dW_ih rows 0..4: equals the value without the coupling term"]),
    (3, "3.3", "np.zeros_like(df),", "df * f * (1 - f),",
     ["check dz_f = 0: with f = 1 − i the forget gate has no pre-activation of its own", "forget gate f",
      "dW_hh rows 5..9: should be zero but is not"]),
]
