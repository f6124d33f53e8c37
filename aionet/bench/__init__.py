"""``aionet bench``: a multi-protocol load generator (see ``aionet bench --help``).

Layout: ``target.py`` (the Target/Session plugin API), ``registry.py`` (names → targets),
``clients/<proto>.py`` (the built-in targets), ``runner.py`` (load models, workers),
``hist.py`` (the mergeable histogram), ``result.py`` (JSON schema, merge), ``report.py``
(live line, summary, compare, HTML), ``cli.py``.
"""

from .hist import Histogram as Histogram
from .result import Result as Result
from .result import merge as merge
from .runner import Plan as Plan
from .target import BenchError as BenchError
from .target import Session as Session
from .target import Target as Target

__all__ = ["BenchError", "Histogram", "Plan", "Result", "Session", "Target", "merge"]
