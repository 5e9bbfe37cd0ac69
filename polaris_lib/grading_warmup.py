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
