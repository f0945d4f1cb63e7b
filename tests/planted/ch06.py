"""Planted bugs for chapter 6: (chapter, exercise, old, new, strings the report must contain).

Each replaces ``old`` by ``new`` in the pasted-back solution of ``exercise``; the grader must
fail that exercise only and its report must contain every string."""
PLANTED = [
    # 6.1 variational dropout
    (6, "6.1", "rng.random((1,) + x.shape[1:])", "rng.random(x.shape)",
     ["mask resampled per step", "the same mask at every time step"]),
    (6, "6.1", "mask = keep / (1.0 - p)", "mask = keep * 1.0",
     ["missing inverted scaling", "kept entries are 1/(1 − p)"]),
    (6, "6.1", "return x * mask, dy * mask", "return x * mask, dy",
     ["mask not applied in backward", "Only dx = dy ⊙ m with the forward's mask is wrong"]),
    # 6.2 DropConnect
    (6, "6.2", 'grads["W_hh"] = mask * grads["W_hh"]', 'grads["W_hh"] = grads["W_hh"]',
     ["check the final step dW_hh = M ⊙ dW̃_hh", "dW_hh: equals dW̃_hh, the gradient of the masked matrix without the final M ⊙"]),
    (6, "6.2", "rb.backward(architecture, masked, cache, dy)", "rb.backward(architecture, params, cache, dy)",
     ["check the parameters given to rb.backward", "the backward must get the same masked parameters"]),
    (6, "6.2", 'masked = {**params, "W_hh": mask * params["W_hh"]}', "masked = params",
     ["check the masked weights", "y: equals the output of the cell with the unmasked W_hh"]),
    # 6.3 the cubic schedule
    (6, "6.3", "(1.0 - frac) ** 3", "(1.0 - frac) ** 2",
     ["equals a quadratic ramp (exponent 2; the exponent is 3)", "check the ramp"]),
    (6, "6.3", "span = n_updates * frequency", "span = (n_updates - 1) * frequency",
     ["equals a ramp of length (n − 1)Δt (off by one update"]),
    (6, "6.3", "if step >= begin_step + span:\n    return float(final_sparsity)\n", "",
     ["equals the formula applied outside [t_0, t_0 + nΔt] too", "s_t = s_f for t > t_0 + nΔt"]),
    # 6.4 the magnitude mask
    (6, "6.4", "np.argsort(np.abs(W).ravel(), kind=\"stable\")", "np.argsort(W.ravel(), kind=\"stable\")",
     ["pruning by value, not magnitude", "check the ranking: sort by magnitude |W|"]),
    (6, "6.4", "int(np.floor(sparsity * W.size + 0.5))", "int(sparsity * W.size)",
     ["k = int(s·N) truncates; use k = round(s·N)", "check the number of entries to prune"]),
    # 6.5 the NT-ASGD trigger
    (6, "6.5", "value > min(logs[:t - nonmono])", "value > min(logs)",
     ["equals the monotone rule v > min(logs)", "Only the window of the old best is wrong"]),
    (6, "6.5", "t > nonmono and", "t >= nonmono and",
     ["raised ValueError", "test t > n first"]),
    (6, "6.5", "min(logs[:t - nonmono])", "min(logs[t - nonmono:])",
     ["v > min of the LAST n checks"]),
]
