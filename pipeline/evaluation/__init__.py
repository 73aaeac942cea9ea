"""Evaluation for `dra-pipeline evaluate`, one concept per module (the wiring is jobs/evaluate.py).

points.py      the points (the first n of a split, a fixed random draw, or a listed subset)
attacks.py     AutoAttack's components (official pyautoattack code), PGD and FGSM, as batch callables
worst_case.py  the per-point worst case over attacks, run as AutoAttack's cascade, resumable by batch
state.py       the resumable state, keyed by every setting and written atomically
intervals.py   accuracy with n and a 95 % Wilson interval
sanity.py      the checks a reviewer runs (eps grid, chance, more steps, white-box vs Square, determinism, flags)
report.py      report.json, report.md and the RobustBench-style model-info JSON
"""
