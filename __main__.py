"""klutch-central: a Klutch Central Management Cluster on AWS (see README.md)."""

from klutch.central.program import main

main()
