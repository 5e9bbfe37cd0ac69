"""Preloaded into the grader's forkserver: import math-verify and run its first, slow parses once.

math-verify's first LaTeX parse builds its ANTLR parser and sympy caches (~0.5 s). Doing it here,
in the forkserver that every grading worker forks from, means no worker (nor a replacement for
a killed one) pays it again. Importing this module has that side effect on purpose.
"""

import logging

from math_verify import parse, verify

logging.getLogger("math_verify").setLevel(logging.ERROR)
_half = parse("\\boxed{\\frac{1}{2}}", parsing_timeout=None)
_eq = parse("\\boxed{x = 8.7 \\times 10^{8}}, \\boxed{(1, 2]}", parsing_timeout=None)
verify(_half, parse("\\boxed{0.5}", parsing_timeout=None), timeout_seconds=None)
verify(_eq, _half, timeout_seconds=None)

# A worker's first parse of a new construct pays ANTLR's DFA construction. The DFA is per
# process and inherited through fork, so parsing one of each common answer shape here gives
# every worker (and every replacement for a killed one) a built DFA: ~8% less worker time on
# the throughput benchmark's first batch, for ~0.7 s once at forkserver start.
_SHAPES = [
    "\\frac{\\sqrt{3}}{2}",
    "y > 3",
    "\\{1, 2\\}",
    "2^{10}",
    "\\pi/4",
    "\\sin x + \\cos^2(y)",
    "\\log_2 8",
    "a+b-c",
    "f(x)=2x+1",
    "\\dfrac{a}{b+c}",
    "10\\%",
    "\\text{yes}",
    "x^2+3x-4=0",
    "-\\infty",
    "[0, \\infty)",
    "\\sqrt[3]{2}",
    "e^{i\\pi}",
    "n(n+1)/2",
    "k \\geq 1",
    "\\arctan{\\frac{1}{2}}",
    "1.5 \\mathrm{~m}",
    "x \\in (0,1)",
    "\\begin{pmatrix}1\\\\2\\end{pmatrix}",
]
for _shape in _SHAPES:  # parses only: that is where the DFA is built (~0.7 s, once)
    parse("\\boxed{" + _shape + "}", parsing_timeout=None)
