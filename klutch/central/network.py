"""Layer 1: the AWS network. A VPC over N (default 3) availability zones, one public and one
private subnet per zone, an internet gateway, NAT gateway(s) per strategy, routes.

Plain pulumi_aws resources (no awsx component), so the mock engine sees every subnet and route.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from klutch.config.central import NetworkConfig, subnet_layout


@dataclass(frozen=True)
class NetworkArgs:
    config: NetworkConfig
    cluster_name: str
    tags: Mapping[str, str]


class Network(pulumi.ComponentResource):
    """VPC, subnets, gateways and routes for the EKS cluster and its load balancers."""

    vpc_id: pulumi.Output[str]
    public_subnet_ids: list[pulumi.Output[str]]
    private_subnet_ids: list[pulumi.Output[str]]

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("klutch:network:Network", name, None, opts)
        cfg = args.config
        child = pulumi.ResourceOptions(parent=self)
        cluster_tag = {f"kubernetes.io/cluster/{args.cluster_name}": "shared"}

        def tags(role: str, **extra: str) -> dict[str, str]:
            return {**args.tags, "Name": f"{args.cluster_name}-{role}", **extra}

        zones = self._zones(cfg)
        private_cidrs, public_cidrs = subnet_layout(cfg.cidr, cfg.az_count)

        vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=cfg.cidr,
            enable_dns_hostnames=True,
            enable_dns_support=True,
            tags=tags("vpc"),
            opts=child,
        )
        igw = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, tags=tags("igw"), opts=child)

        public_rt = aws.ec2.RouteTable(f"{name}-public", vpc_id=vpc.id, tags=tags("public"), opts=child)
        aws.ec2.Route(
            f"{name}-public-default",
            route_table_id=public_rt.id,
            destination_cidr_block="0.0.0.0/0",
            gateway_id=igw.id,
            opts=child,
        )

        def subnet(tier: str, i: int, cidr: str, role_tag: str, route_table: aws.ec2.RouteTable) -> aws.ec2.Subnet:
            created = aws.ec2.Subnet(
                f"{name}-{tier}-{i}",
                vpc_id=vpc.id,
                cidr_block=cidr,
                availability_zone=zones[i],
                map_public_ip_on_launch=False,
                tags=tags(f"{tier}-{i}", **cluster_tag, **{role_tag: "1"}),
                opts=child,
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-{tier}-{i}", subnet_id=created.id, route_table_id=route_table.id, opts=child
            )
            return created

        public = [
            subnet("public", i, public_cidrs[i], "kubernetes.io/role/elb", public_rt) for i in range(cfg.az_count)
        ]
        nats = []
        for i in range(cfg.az_count if cfg.nat_gateways == "one-per-az" else 1):
            eip = aws.ec2.Eip(f"{name}-nat-{i}", domain="vpc", tags=tags(f"nat-{i}"), opts=child)
            nats.append(
                aws.ec2.NatGateway(
                    f"{name}-nat-{i}",
                    allocation_id=eip.id,
                    subnet_id=public[i].id,
                    tags=tags(f"nat-{i}"),
                    opts=pulumi.ResourceOptions(parent=self, depends_on=[igw]),
                )
            )

        private = []
        for i in range(cfg.az_count):
            rt = aws.ec2.RouteTable(f"{name}-private-{i}", vpc_id=vpc.id, tags=tags(f"private-{i}"), opts=child)
            aws.ec2.Route(
                f"{name}-private-{i}-default",
                route_table_id=rt.id,
                destination_cidr_block="0.0.0.0/0",
                nat_gateway_id=nats[i % len(nats)].id,
                opts=child,
            )
            private.append(subnet("private", i, private_cidrs[i], "kubernetes.io/role/internal-elb", rt))

        self.vpc_id = vpc.id
        self.public_subnet_ids = [s.id for s in public]
        self.private_subnet_ids = [s.id for s in private]
        self.register_outputs(
            {
                "vpcId": self.vpc_id,
                "publicSubnetIds": self.public_subnet_ids,
                "privateSubnetIds": self.private_subnet_ids,
            }
        )

    @staticmethod
    def _zones(cfg: NetworkConfig) -> list[pulumi.Input[str]]:
        """The configured zones, or the region's first `az_count` available (not opt-in) zones."""
        if cfg.availability_zones:
            return list(cfg.availability_zones)
        found = aws.get_availability_zones_output(
            state="available", filters=[{"name": "opt-in-status", "values": ["opt-in-not-required"]}]
        ).names

        def pick(i: int):
            def at(names: list[str]) -> str:
                if len(names) < cfg.az_count:
                    raise pulumi.RunError(
                        f"network.azCount = {cfg.az_count}: the region has only {len(names)} available zones "
                        f"({', '.join(names)}); lower azCount or pick another region"
                    )
                return sorted(names)[i]

            return found.apply(at)

        return [pick(i) for i in range(cfg.az_count)]
