"""klutch-central: a Klutch Central Management Cluster on AWS (see README.md)."""

from components.program import main

main()
