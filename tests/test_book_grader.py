"""The grader: the student edition with the solutions pasted back passes; one planted bug per
exercise is caught and the report names the faulty gate / parameter / term."""
import dataclasses
import runpy
from pathlib import Path
import subprocess
import sys

import numpy as np
import pytest

from rnnbook.book import ImplementMe, check, editions, grading, notebooks
from rnnbook.book.grading import ExerciseFailed, Probe, describe_difference, describe_shape

CHAPTERS = {notebooks.chapter_number(c): c for c in notebooks.list_chapters(notebooks.package_root() / "chapters")}


def solutions(chapter: int) -> dict:
    return editions.solutions(notebooks.read(CHAPTERS[chapter]))


def student_with(chapter: int, tmp_path, answers: dict, fmt="ipynb", name=None):
    """The student edition of ``chapter`` (built by the real command path) with ``answers`` pasted in."""
    built = editions.build_student(CHAPTERS[chapter], tmp_path / "edition", fmt)
    student = editions.paste_solutions(notebooks.read(built), answers)
    return notebooks.write(student, tmp_path / (name or CHAPTERS[chapter].stem), fmt)


def plant(chapter: int, exercise: str, old: str, new: str) -> dict:
    """The chapter's solutions with one bug planted in ``exercise``."""
    answers = solutions(chapter)
    text = "\n".join(answers[exercise][0])
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times in the solution of {exercise}"
    answers[exercise] = [text.replace(old, new).split("\n")]
    return answers


def by_id(grades):
    return {g.exercise: g for g in grades}


# ------------------------------------------------------------------------ pasted-back solutions pass
@pytest.mark.parametrize("chapter", sorted(CHAPTERS))
@pytest.mark.parametrize("fmt", ["ipynb", "py"])
def test_student_edition_with_the_solutions_pasted_back_passes(chapter, fmt, tmp_path):
    path = student_with(chapter, tmp_path, solutions(chapter), fmt)
    grades, notes = grading.grade_file(path)
    assert notes == []
    expected = sorted(i for i, e in grading.registry().items() if e.chapter == chapter)
    assert sorted(by_id(grades)) == expected
    for g in grades:
        assert g.status == "pass", g.render()


def test_grade_command_exit_codes_and_report(tmp_path):
    good = student_with(4, tmp_path, solutions(4))
    run = subprocess.run([sys.executable, "-m", "rnnbook", "book", "grade", str(good)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "2 of 2 exercises pass" in run.stdout and "PASS" in run.stdout
    raw = editions.build_student(CHAPTERS[4], tmp_path / "raw", "ipynb")
    run = subprocess.run([sys.executable, "-m", "rnnbook", "book", "grade", str(raw)], capture_output=True, text=True)
    assert run.returncode == 1 and run.stdout.count("NOT IMPLEMENTED") == 2
    run = subprocess.run([sys.executable, "-m", "rnnbook", "book", "grade", str(tmp_path / "nope.ipynb")],
                         capture_output=True, text=True)
    assert run.returncode == 2 and "no such file" in run.stderr


def test_grading_after_running_the_whole_notebook(tmp_path):
    path = student_with(1, tmp_path, plant(1, "1.3", "min(1.0, max_norm / norm)", "max_norm / norm"))
    grades, _ = grading.grade_file(path, execute=True)
    g = by_id(grades)
    assert g["1.1"].passed and g["1.2"].passed and g["1.3"].status == "fail"


# ------------------------------------------------------------------------ planted bugs are named
# One file per chapter under tests/planted/, each defining PLANTED = [(chapter, exercise,
# old, new, strings the report must contain), ...] (separate files so chapters don't collide).
PLANTED = [entry for f in sorted((Path(__file__).parent / "planted").glob("ch*.py"))
           for entry in runpy.run_path(str(f))["PLANTED"]]


@pytest.mark.parametrize("chapter, exercise, old, new, expected", PLANTED,
                         ids=[f"{p[1]}:{p[2][:24]}" for p in PLANTED])
def test_planted_bug_is_named(chapter, exercise, old, new, expected, tmp_path):
    path = student_with(chapter, tmp_path, plant(chapter, exercise, old, new))
    grades = by_id(grading.grade_file(path)[0])
    report = grades[exercise].render()
    print(report)
    assert grades[exercise].status == "fail"
    for text in expected:
        assert text in report, f"{text!r} not in\n{report}"
    assert grades[exercise].diagnosis, "a failing grade comes with a diagnosis"
    for other, g in grades.items():
        if other != exercise:
            assert g.passed, g.render()


def test_every_exercise_has_a_planted_bug_test():
    assert {p[1] for p in PLANTED} == set(grading.registry())


# ------------------------------------------------------------------------ other outcomes
def test_missing_crashing_and_endless_answers(tmp_path, monkeypatch):
    answers = solutions(1)
    answers["1.1"] = [["x_t, h_prev, dphi_a = cache", "return dphi_a.undefined_attribute"]]
    answers["1.3"] = [["while True:", "    pass"]]
    path = student_with(1, tmp_path, answers)
    text = path.read_text().replace("def rnn_rtrl_step(", "def renamed_rtrl_step(")
    path.write_text(text)
    monkeypatch.setitem(grading._REGISTRY, "1.3", dataclasses.replace(grading.get("1.3"), timeout=0.5))
    g = by_id(grading.grade_file(path)[0])
    assert g["1.1"].status == "error" and "AttributeError" in g["1.1"].message
    assert "return dphi_a.undefined_attribute" in g["1.1"].message          # the student's line
    assert g["1.2"].status == "missing" and "no function named rnn_rtrl_step" in g["1.2"].message
    assert g["1.3"].status == "error" and "did not finish within 0.5 s" in g["1.3"].message


def test_a_plain_module_and_the_exercise_option(tmp_path):
    module = tmp_path / "answers.py"
    body = "\n".join("    " + line for line in solutions(1)["1.3"][0])
    module.write_text(f"import numpy as np\nLIMIT = 3\n\n\ndef clip_global_norm(grads, max_norm):\n{body}\n\n"
                      "print('module-level code is not run by the grader')\nraise SystemExit\n")
    grades, _ = grading.grade_file(module)
    assert [g.exercise for g in grades] == ["1.3"] and grades[0].passed
    grades, _ = grading.grade_file(module, exercises=["1.1", "1.3"])
    assert [g.status for g in grades] == ["missing", "pass"]
    with pytest.raises(KeyError, match="no exercise"):
        grading.grade_file(module, exercises=["8.8"])
    (tmp_path / "empty.py").write_text("x = 1\n")
    with pytest.raises(LookupError, match="defines none of the exercise functions"):
        grading.grade_file(tmp_path / "empty.py")


def test_check_in_the_notebook():
    ns = {"np": np}
    exec("\n".join(["def clip_global_norm(grads, max_norm):"]
                   + ["    " + line for line in solutions(1)["1.3"][0]]), ns)
    assert check("1.3", ns["clip_global_norm"], quiet=True).passed

    def wrong(grads, max_norm):
        norm = float(np.sqrt(sum(float((g * g).sum()) for g in grads.values())))
        return {k: g * (max_norm / norm) for k, g in grads.items()}, norm
    with pytest.raises(ExerciseFailed, match="min\\(1, max_norm"):
        check("1.3", wrong, quiet=True)

    def todo(grads, max_norm):
        raise ImplementMe("1.3", "clip it")
    assert check("1.3", todo, quiet=True).status == "not implemented"
    with pytest.raises(KeyError, match="no exercise '7.7'"):
        check("7.7", todo)


# ------------------------------------------------------------------------ the diagnosis machinery
def test_describe_difference_names_the_usual_slips():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 4))
    assert "wrong sign" in describe_difference(-w, w)
    assert "transpose" in describe_difference(w.T, w)
    assert "2.5 × the right value" in describe_difference(2.5 * w, w)
    assert "zero everywhere" in describe_difference(np.zeros_like(w), w)
    assert "equals my slip" in describe_difference(w + 1, w, {"my slip": w + 1})
    part = w.copy()
    part[1, 2] += 1
    assert "wrong in 1 of 16 entries, worst at [1, 2]" in describe_difference(part, w)
    assert "should be zero" in describe_difference(w, np.zeros_like(w))
    v = rng.standard_normal((3, 5))
    assert "transposed (its transpose is right)" in describe_shape(v.T, v)
    assert "sum over the batch" in describe_shape(rng.standard_normal((2, 5)), np.zeros(5))


def test_diagnosis_names_one_quantity_or_two():
    def probe_with(wrong):
        p = Probe(lambda: None)
        for term in "abcd":
            p.expect(term, term not in wrong, "wrong", hint=f"formula {term}")
        p.explain("q feeds a and b", {"a", "b"})
        p.explain("s feeds c", {"c"})
        return p.diagnosis()
    assert probe_with("ab")[1] == "  check q feeds a and b"
    assert probe_with("d") == ["Only d is wrong: check formula d"]
    assert probe_with("abd")[1:] == ["  check q feeds a and b", "  and check formula d"]
    assert "no single quantity" in probe_with("acd")[0]
    assert probe_with("") == []


def test_registry_rejects_bad_ids_and_duplicates():
    with pytest.raises(ValueError, match="must look like '4.1'"):
        grading.exercise("four", "f", "t", "task")
    grading.registry()                  # loads the chapters' exercises (the test may run first)
    with pytest.raises(ValueError, match="registered twice"):
        grading.exercise("1.1", "f", "t", "task")(lambda probe: None)
    assert grading.registry()["1.1"].checker.__module__.endswith("ch01_elman")
