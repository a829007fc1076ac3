"""klutch-tenant: bind a consumer cluster to a Klutch central stack (docs/tenant.md)."""

from klutch.tenant.program import main

main()
