"""The server image's HEALTHCHECK: exit 0 when /v2/health/ready answers 200 (the OIP readiness probe)."""

import os
import sys
import urllib.request

url = f"http://127.0.0.1:{os.environ.get('PORT', '8080')}/v2/health/ready"
try:
    with urllib.request.urlopen(url, timeout=3) as r:
        sys.exit(0 if r.status == 200 else 1)
except OSError:
    sys.exit(1)
