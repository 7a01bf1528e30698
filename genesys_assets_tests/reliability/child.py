"""One domain run in its own process, recorded in the real DagsterInstance of ``$DAGSTER_HOME``.

Usage: python -m genesys_assets_tests.reliability.child '<json: endpoints, home, domain, day, config, genesys>'
Exit code 0 when the run succeeded, 1 when it failed (the test reads the details from the instance).
"""

from __future__ import annotations

import json
import sys
from datetime import date
from pathlib import Path

import dagster as dg

from genesys_assets.sandbox.services import SandboxEndpoints
from genesys_assets_tests.reliability.platform import run_domain


def main(argv: list[str]) -> int:
    args = json.loads(argv[0])
    with dg.DagsterInstance.get() as instance:
        result = run_domain(SandboxEndpoints(**args["endpoints"]), Path(args["home"]), args["domain"],
                            date.fromisoformat(args["day"]), instance=instance, config=args["config"],
                            **args["genesys"])
    print(json.dumps({"run_id": result.run_id, "success": result.success}), flush=True)
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
