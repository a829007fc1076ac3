"""The tenant fleet: one stack file per tenant cluster, selected, deployed, retired and viewed (klutch-fleet)."""
