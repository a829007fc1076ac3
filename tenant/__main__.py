"""klutch-tenant: bind a consumer cluster to a Klutch central stack (README.md, "Binding a tenant cluster")."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root, home of `components`

from components.tenant_program import main  # noqa: E402

main()
