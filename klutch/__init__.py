"""klutch-central: a Klutch Central Management Cluster on AWS, as a Pulumi program.

Each layer is one ComponentResource in its own module; `catalog` holds every version, image,
name and data service; `config` parses and validates the stack configuration once.
"""
