"""The ActiveDataFlow operator: CRDs, Job bodies, status logic and the kopf handlers.

`kopf run -m adf_operator` works: when kopf is already imported (as by kopf's own CLI),
importing this package registers the handlers. Other users of the package (the `adf` CLI, the
heartbeat) do not pay for importing kopf.
"""

import sys

if "kopf" in sys.modules:
    import adf_operator.handlers  # noqa: F401
