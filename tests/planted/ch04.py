"""Planted bugs for chapter 4: (chapter, exercise, old, new, strings the report must contain).

Each replaces ``old`` by ``new`` in the pasted-back solution of ``exercise``; the grader must
fail that exercise only and its report must contain every string."""
PLANTED = [
    (4, "4.1", "dz = dh * (h_prev - n)", "dz = dh * (n - h_prev)",
     ["check the update gate's local gradient: dz = dh ⊙ (h_prev − n)",
      "update gate z", "dW_ih rows 5..9: has the wrong sign"]),
    (4, "4.1", "dgh_n = da_n * r", "dgh_n = da_n",
     ["check dgh_n = da_n ⊙ r", "dW_hh rows 10..14", "db_hh[10:15]"]),
    (4, "4.2", "dr = du * h_prev", "dr = -du * h_prev",
     ["check the reset gate's local gradient", "reset gate r", "dW_hh rows 0..4: has the wrong sign"]),
    (4, "4.2", "da_n.T @ u", "da_n.T @ h_prev",
     ["Only dW_hh rows 10..14 is wrong: check dW_hn = da_nᵀ (r ⊙ h_prev)"]),
]
