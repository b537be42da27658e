import sys, runtime; sys.modules[__name__] = runtime  # noqa: E401 E702  `dbos` *is* `runtime`
