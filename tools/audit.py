"""pip-audit over the dependencies installed in relay's environment (run by `make test`).

Fails on a known vulnerability. When pip-audit's vulnerability database (PyPI's advisory
data) cannot be reached, or answers for none of the dependencies, it says so plainly and
skips: an offline machine is not a failure of relay, and the output must not pretend that
anything was audited.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

NETWORK_TROUBLE = ("ConnectionError", "Max retries exceeded", "timed out", "NameResolution",
                   "Temporary failure in name resolution", "Network is unreachable",
                   "ServiceError", "ProxyError", "SSLError")


def skip(reason: str) -> int:
    print(f"pip-audit: SKIPPED, nothing was audited: {reason}")
    return 0


def main() -> int:
    result = subprocess.run(
        [sys.executable, "-m", "pip_audit", "--format", "json", "--skip-editable",
         "--progress-spinner", "off"],
        capture_output=True, text=True, timeout=600, check=False)
    try:
        report: dict[str, Any] = json.loads(result.stdout)
    except ValueError:
        errors = result.stderr.strip()
        if any(marker in errors for marker in NETWORK_TROUBLE):
            last = errors.splitlines()[-1] if errors else "no output"
            return skip(f"the vulnerability database cannot be reached ({last[:200]})")
        print(errors)
        print("pip-audit: FAILED to run (above)")
        return 1
    dependencies = report.get("dependencies", [])
    audited = [d for d in dependencies if "skip_reason" not in d]
    vulnerable = [d for d in audited if d.get("vulns")]
    if not audited:
        return skip(f"the vulnerability database answered for none of the {len(dependencies)}"
                    " installed dependencies (is PyPI's JSON API reachable from here?)")
    for dependency in vulnerable:
        for vuln in dependency["vulns"]:
            fixed = ", ".join(vuln.get("fix_versions", [])) or "no fixed version yet"
            print(f"  {dependency['name']} {dependency['version']}: {vuln['id']} "
                  f"(fixed in {fixed})")
    skipped = len(dependencies) - len(audited)
    summary = f"{len(audited)} dependencies audited" + (
        f", {skipped} not found in the database" if skipped else "")
    if vulnerable:
        print(f"pip-audit: FAILED: {len(vulnerable)} with known vulnerabilities; {summary}")
        return 1
    print(f"pip-audit: no known vulnerabilities; {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
